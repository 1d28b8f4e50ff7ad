"""Monitoring API under ``/api``: shadow comparisons, outcomes, per-model settings and the
notifications sent to models' owners."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request

from model_manager.api.bodies import json_object, json_value
from model_manager.errors import Conflict
from model_manager.notify import HealthWatch, Notifier
from model_manager.registry import Registry
from model_manager.serving.cache import ModelCache
from model_manager.serving.model_settings import SettingsCache
from model_manager.serving.references import set_reference
from model_manager.telemetry import PredictionLog, ShadowStats, parse_outcomes
from model_manager.telemetry.drift import FIRST_INPUT, DriftMonitor, read_reference


def monitoring_routes(registry: Registry, settings: SettingsCache, shadow_stats: ShadowStats,
                      predictions: PredictionLog, notifier: Notifier,
                      health_watch: HealthWatch, drift: DriftMonitor,
                      cache: ModelCache) -> APIRouter:
    api = APIRouter(prefix="/api")

    async def known(name: str) -> None:
        await anyio.to_thread.run_sync(registry.get_model, name)  # 404 for an unknown model

    @api.get("/models/{name}/shadow")
    async def shadow(name: str, days: int = Query(30, ge=1, le=90)) -> dict[str, Any]:
        await known(name)
        pairs = await anyio.to_thread.run_sync(shadow_stats.report, name, days)
        return {"model": name, "days": days, "dropped_since_start": shadow_stats.dropped[name],
                "pairs": pairs}

    @api.post("/models/{name}/outcomes")
    async def add_outcomes(name: str, request: Request) -> dict[str, Any]:
        outcomes = parse_outcomes(json_value(await request.body()))
        joined = await anyio.to_thread.run_sync(predictions.add_outcomes, name, outcomes)
        return {"model": name, **joined}

    @api.get("/models/{name}/outcomes")
    async def outcomes(name: str) -> dict[str, Any]:
        scores = await anyio.to_thread.run_sync(predictions.scores, name)
        return {"model": name, "versions": scores}

    @api.get("/models/{name}/settings")
    async def get_settings(name: str) -> dict[str, Any]:
        await known(name)
        return {"model": name, **settings.get(name).to_json()}

    @api.patch("/models/{name}/settings")
    async def update_settings(name: str, request: Request) -> dict[str, Any]:
        changes = json_object(await request.body())
        updated = await anyio.to_thread.run_sync(settings.update, name, changes)
        return {"model": name, **updated.to_json()}

    @api.get("/models/{name}/drift")
    async def drift_report(name: str) -> dict[str, Any]:
        model = await anyio.to_thread.run_sync(registry.get_model, name)
        versions = [v for v in model.versions if not v.archived]
        reports = [await anyio.to_thread.run_sync(drift.report, (name, v.number))
                   for v in versions]
        return {"model": name, "versions": reports}

    @api.put("/models/{name}/versions/{version}/reference")
    async def put_reference(name: str, version: str, request: Request,
                            filename: str = Query("reference.npy", max_length=200)
                            ) -> dict[str, Any]:
        record = await anyio.to_thread.run_sync(registry.get_version, name, version)
        body = await request.body()
        sample = read_reference(body, filename, FIRST_INPUT)
        profile = await set_reference(cache, drift, record, sample)
        return {"model": name, "version": record.number, "rows": profile.rows,
                "columns": [c.name for c in profile.columns]}

    @api.get("/models/{name}/notifications")
    async def notifications(name: str, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        await known(name)
        rows = await anyio.to_thread.run_sync(notifier.log, name, limit)
        return {"model": name, "owner": settings.get(name).owner,
                "health_seen": health_watch.seen(name), "queued": notifier.queued,
                "notifications": rows}

    @api.post("/models/{name}/notifications/test")
    async def test_notification(name: str) -> dict[str, Any]:
        await known(name)
        if not settings.get(name).notify:
            raise Conflict(f"model {name!r} has no notify targets; set them first "
                           f"(PATCH /api/models/{name}/settings with \"notify\")")
        return {"model": name, "sent": await notifier.test(name)}

    return api
