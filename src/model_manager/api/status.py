"""``GET /api/status``: how this server stands with what it depends on.

The registry (``ok``, ``unreachable`` or ``unwritable``, since when, its last answer), the
writes waiting in memory for it, the free space of each place the server writes, and whether
model processes (uploads' checks, isolated versions) can be started yet. It reads
nothing from the database, so it answers during an outage, which is when it matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import APIRouter

from model_manager.registry.status import RegistryStatus
from model_manager.runtimes.remote import ForkServer
from model_manager.store.space import measure
from model_manager.telemetry.metrics import WriteBehind


def status_routes(registry: RegistryStatus, writers: Mapping[str, WriteBehind],
                  disks: Mapping[str, Path], fork_server: ForkServer) -> APIRouter:
    api = APIRouter(prefix="/api")

    def disk() -> dict[str, Any]:
        return {place: measure(path).to_json() for place, path in disks.items()}

    @api.get("/status")
    async def status() -> dict[str, Any]:
        return {"registry": registry.to_json(),
                "writes_pending": {kind: w.pending_count() for kind, w in writers.items()},
                "writes_dropped": {kind: w.writes_dropped for kind, w in writers.items()},
                "disk": await anyio.to_thread.run_sync(disk),
                "model_processes": fork_server.to_json()}

    return api
