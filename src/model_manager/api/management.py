"""Management API under ``/api``: models, versions, aliases, events."""

from __future__ import annotations

from typing import Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response

from model_manager.api.bodies import json_object
from model_manager.api.uploads import NO_FILE, read_upload
from model_manager.api.whole import WholeServer
from model_manager.catalog import Catalog, parse_metadata
from model_manager.clock import iso
from model_manager.errors import InvalidInput
from model_manager.fleet import Fleet
from model_manager.health import HealthMonitor
from model_manager.registry import VersionRecord, check_model_name
from model_manager.runtimes import format_table
from model_manager.serving import ModelCache, VersionLifecycle
from model_manager.serving.references import set_reference
from model_manager.telemetry import UsageRecorder, usage_report
from model_manager.telemetry.drift import FIRST_INPUT, DriftMonitor, read_reference
from model_manager.telemetry.recent import Series, fleet_report, recent_report
from model_manager.workers import Siblings


def management_routes(catalog: Catalog, lifecycle: VersionLifecycle, cache: ModelCache,
                      usage: UsageRecorder, health: HealthMonitor, whole: WholeServer,
                      fleet: Fleet, siblings: Siblings | None = None,
                      drift: DriftMonitor | None = None) -> APIRouter:
    api = APIRouter(prefix="/api")
    registry = catalog.registry

    def with_state(version: VersionRecord,
                   holders: dict[tuple[str, int], list[dict[str, int]]] | None = None
                   ) -> dict[str, Any]:
        """The version with its state in this server; with several workers, ``workers`` lists
        those holding it, and a version any of them holds is READY."""
        state = cache.state_of(version.model, version.number)
        answer = {**version.to_json(), "state": state.state.value, "reason": state.reason,
                  "loaded_bytes": state.size, "device": catalog.device_for(version),
                  "device_bytes": state.device_size, "in_flight": state.in_flight,
                  "last_used": iso(state.last_used, "auto")}
        if siblings is not None:
            held = (siblings.holders() if holders is None else holders).get(
                (version.model, version.number), [])
            answer["workers"] = held
            if held and state.state.value not in ("READY", "LOADING"):
                answer.update(state="READY", reason=None)
            if held:
                answer["loaded_bytes"] = sum(h["bytes"] for h in held)
        return answer

    @api.get("/models")
    async def list_models() -> list[dict[str, Any]]:
        models = await anyio.to_thread.run_sync(registry.list_models)
        return [m.to_json(with_versions=False) for m in models]

    @api.get("/formats")
    async def formats() -> list[dict[str, object]]:
        return format_table()

    @api.get("/models/{name}")
    async def get_model(name: str) -> dict[str, Any]:
        model = await anyio.to_thread.run_sync(registry.get_model, name)
        holders = siblings.holders() if siblings is not None else None
        replicas = await anyio.to_thread.run_sync(fleet.holders)
        return {**model.to_json(), "versions": [
            {**with_state(v, holders), "replicas": replicas.get((v.model, v.number), [])}
            for v in model.versions]}

    @api.post("/models/{name:path}/versions", status_code=201)
    async def upload_version(name: str, request: Request) -> dict[str, Any]:
        check_model_name(name)  # before reading a byte of the body
        declared = _declared_size(request)
        if declared is not None:  # an upload that cannot fit is refused before it is sent
            await anyio.to_thread.run_sync(catalog.check_room, declared)
        async with read_upload(request, catalog.open_stager) as form:
            staged = form.staged
            if staged is None:
                raise InvalidInput(NO_FILE)
            fmt, metadata = form.fields.get("format"), parse_metadata(form.fields.get("metadata"))
            compile_twin = _flag(form.fields.get("compile"), "compile")
            reference = None
            if form.reference is not None and drift is not None:  # read before registering
                reference = read_reference(form.reference[1], form.reference[0], FIRST_INPUT)
            version = await anyio.to_thread.run_sync(lambda: catalog.add_staged(
                name, staged, filename=form.filename, format=fmt or None, metadata=metadata,
                compile=compile_twin))
        answer = version.to_json()
        if reference is not None and drift is not None:  # the version is in: say how it went
            try:
                profile = await set_reference(cache, drift, version, reference)
                answer["drift_reference"] = {"rows": profile.rows}
            except InvalidInput as exc:
                answer["drift_reference"] = {"error": exc.message}
        return answer

    @api.get("/models/{name}/versions/{version}")
    async def get_version(name: str, version: str) -> dict[str, Any]:
        record = await anyio.to_thread.run_sync(registry.get_version, name, version)
        return with_state(record)

    @api.delete("/models/{name}/versions/{version}")
    async def delete_version(name: str, version: str) -> dict[str, Any]:
        record = await lifecycle.delete_version(name, version)
        return {"deleted": record.to_json()}

    @api.put("/models/{name}/aliases/{alias}")
    async def set_alias(name: str, alias: str, request: Request) -> dict[str, Any]:
        ref, force = _version_ref(await request.body())
        record = await lifecycle.set_alias(name, alias, ref, force=force)
        return {"model": name, "alias": alias, "version": record.number}

    @api.delete("/models/{name}/aliases/{alias}", status_code=204)
    async def delete_alias(name: str, alias: str) -> Response:
        await lifecycle.delete_alias(name, alias)
        return Response(status_code=204)

    @api.get("/models/{name}/traffic")
    async def get_traffic(name: str) -> dict[str, Any]:
        await anyio.to_thread.run_sync(registry.get_model, name)  # 404 for an unknown model
        stored = await anyio.to_thread.run_sync(registry.get_policy, name)
        return {"model": name, "policy": stored}

    @api.put("/models/{name}/traffic")
    async def put_traffic(name: str, request: Request) -> dict[str, Any]:
        policy = await lifecycle.set_traffic(name, json_object(await request.body()))
        return {"model": name, "policy": policy.to_json()}

    @api.delete("/models/{name}/traffic", status_code=204)
    async def delete_traffic(name: str) -> Response:
        await lifecycle.clear_traffic(name)
        return Response(status_code=204)

    @api.post("/models/{name}/promote")
    async def promote(name: str, request: Request) -> dict[str, Any]:
        ref, force = _version_ref(await request.body())
        record = await lifecycle.promote(name, ref, force=force)
        return {"model": name, "alias": "production", "version": record.number}

    @api.post("/models/{name}/rollback")
    async def rollback(name: str) -> dict[str, Any]:
        record = await lifecycle.rollback(name)
        return {"model": name, "alias": "production", "version": record.number}

    @api.put("/models/{name}/versions/{version}/pin")
    async def pin(name: str, version: str) -> dict[str, Any]:
        return with_state(await lifecycle.pin(name, version))

    @api.delete("/models/{name}/versions/{version}/pin")
    async def unpin(name: str, version: str) -> dict[str, Any]:
        return with_state(await lifecycle.unpin(name, version))

    @api.get("/models/{name}/usage")
    async def model_usage(name: str, days: int = Query(30, ge=1, le=90)) -> dict[str, Any]:
        model = await anyio.to_thread.run_sync(registry.get_model, name)
        await whole.flushed()  # what the other workers counted is in the registry
        by_version = await anyio.to_thread.run_sync(usage.usage, name, days)
        return usage_report(name, [v.number for v in model.versions], by_version)

    @api.get("/models/{name}/usage/recent")
    async def model_recent_usage(name: str, span: Literal["hour", "day"] = "hour") -> dict[str, Any]:
        """This server's requests per version over the last hour by minute, or over the last 24
        hours, from the start of the hour, by hour (the dashboard's charts)."""
        model = await anyio.to_thread.run_sync(registry.get_model, name)
        now, recent = await whole.recent(span, name)
        by_version: dict[int, Series] = {v.number: [] for v in model.versions}
        by_version.update({key[1]: series for key, series in recent.items()})
        return recent_report(name, span, now, by_version)

    @api.get("/usage/recent")
    async def fleet_usage() -> dict[str, Any]:
        """This server's requests over the last hour and over the last 24 hours, from the start
        of the hour, per model and version used in that day."""
        now, totals = await whole.recent_totals()
        return fleet_report(now, totals)

    @api.get("/models/{name}/health")
    async def model_health(name: str) -> dict[str, Any]:
        model = await anyio.to_thread.run_sync(registry.get_model, name)
        versions = [health.version_health(v) for v in model.versions if not v.archived]
        worst = min((v["status"] for v in versions), key=_STATUS_ORDER.index, default="unknown")
        return {"model": name, "status": worst, "versions": versions}

    @api.get("/models/{name}/events")
    async def events(name: str) -> list[dict[str, Any]]:
        records = await anyio.to_thread.run_sync(registry.list_events, name)
        return [e.to_json() for e in records]

    return api


_STATUS_ORDER = ["unhealthy", "degraded", "healthy", "idle", "unknown"]


def _version_ref(body: bytes) -> tuple[str | int, bool]:
    """An alias or promote body, ``{"version": 3}`` or ``{"version": "staging"}`` with an
    optional ``"force": true`` (point production at a version whose golden probe fails)."""
    doc = json_object(body)
    ref, force = doc.get("version"), doc.get("force", False)
    if isinstance(ref, bool) or not isinstance(ref, int | str):
        raise InvalidInput('the body is {"version": 3} or {"version": "staging"}, '
                           'with an optional "force": true')
    if not isinstance(force, bool):
        raise InvalidInput("force is true or false")
    return ref, force


def _flag(value: str | None, field: str) -> bool:
    """A form field that is true unless given as false (false, 0, no, off)."""
    if value is None or value.strip().lower() in ("", "true", "1", "yes", "on"):
        return True
    if value.strip().lower() in ("false", "0", "no", "off"):
        return False
    raise InvalidInput(f"{field} is true or false, got {value[:20]!r}")


def _declared_size(request: Request) -> int | None:
    """The body's Content-Length, when the client sent one."""
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() and len(value) < 19 else None
