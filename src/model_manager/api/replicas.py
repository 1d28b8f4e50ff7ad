"""``GET /api/replicas``: the servers sharing this registry, what each holds of its budget."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter

from model_manager.fleet import Fleet


def replica_routes(fleet: Fleet) -> APIRouter:
    api = APIRouter(prefix="/api")

    @api.get("/replicas")
    async def replicas() -> list[dict[str, Any]]:
        """Every replica that beat within the last 10 s; ``this`` marks the one answering."""
        return [r.to_json(fleet.id) for r in await anyio.to_thread.run_sync(fleet.replicas)]

    return api
