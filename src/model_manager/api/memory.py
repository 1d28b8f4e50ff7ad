"""``GET /api/cache``: the model cache now (budget, loaded versions), its latest loads and
evictions, and how many of each there were in each minute of the last hour."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from model_manager.clock import iso
from model_manager.serving import LoadedModel, ModelCache
from model_manager.telemetry import CacheHistory


def memory_routes(cache: ModelCache, history: CacheHistory, clock: Callable[[], float]) -> APIRouter:
    api = APIRouter(prefix="/api")

    @api.get("/cache")
    async def cache_state() -> dict[str, Any]:
        loaded = sorted(cache.loaded(), key=lambda e: (-e.size, e.key))
        now = clock()
        return {"until": iso(now, "milliseconds"), "budget_bytes": cache.budget,
                "used_bytes": cache.used, "loaded": [_entry(e) for e in loaded],
                "events": history.events(), "per_minute": history.per_minute(now)}

    return api


def _entry(entry: LoadedModel) -> dict[str, Any]:
    return {"model": entry.key[0], "version": entry.key[1], "bytes": entry.size,
            "pinned": entry.pinned, "in_flight": entry.in_flight,
            "loaded_at": iso(entry.loaded_at, "milliseconds"),
            "last_used": iso(entry.last_used, "milliseconds")}
