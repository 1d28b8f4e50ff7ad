"""``GET /metrics``: Prometheus text."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Response

from model_manager.telemetry import CONTENT_TYPE, Metrics


def metrics_routes(metrics: Metrics) -> APIRouter:
    api = APIRouter()

    @api.get("/metrics")
    async def render() -> Response:
        body = await anyio.to_thread.run_sync(metrics.render)  # disks, other workers' files
        return Response(body, media_type=CONTENT_TYPE)

    return api
