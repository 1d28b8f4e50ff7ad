"""``GET /api/cache``: the model cache now (budget, loaded versions), its latest loads and
evictions, and how many of each there were in each minute of the last hour; with several
workers, of all of them (``WholeServer``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from model_manager.api.whole import WholeServer


def memory_routes(whole: WholeServer) -> APIRouter:
    api = APIRouter(prefix="/api")

    @api.get("/cache")
    async def cache_state() -> dict[str, Any]:
        return await whole.cache_state()

    return api
