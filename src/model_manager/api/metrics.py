"""``GET /metrics``: Prometheus text."""

from __future__ import annotations

from fastapi import APIRouter, Response

from model_manager.telemetry import CONTENT_TYPE, Metrics


def metrics_routes(metrics: Metrics) -> APIRouter:
    api = APIRouter()

    @api.get("/metrics")
    async def render() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return api
