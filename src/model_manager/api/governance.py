"""Governance API: the fleet report, cleanup, and archiving versions by hand."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request

from model_manager import doctor
from model_manager.api.bodies import json_object
from model_manager.catalog import Catalog
from model_manager.errors import InvalidInput
from model_manager.governance import Governance
from model_manager.serving import VersionLifecycle

LIMITS = ("window", "stale_after", "never_used_grace", "idle_after", "purge_after")


def governance_routes(governance: Governance, lifecycle: VersionLifecycle,
                      catalog: Catalog, disks: Mapping[str, Path]) -> APIRouter:
    api = APIRouter(prefix="/api")

    @api.get("/report")
    async def report(request: Request, model: str | None = None) -> dict[str, Any]:
        overrides = {k: request.query_params.get(k) for k in LIMITS}
        return await governance.report(overrides, model)

    @api.post("/cleanup")
    async def cleanup(request: Request) -> dict[str, Any]:
        body = json_object(await request.body())
        unknown = body.keys() - {"dry_run", "model", "findings", *LIMITS}
        if unknown:
            raise InvalidInput(f"unknown cleanup fields {sorted(unknown)}")
        dry_run, findings, model = body.get("dry_run", True), body.get("findings"), body.get("model")
        if not isinstance(dry_run, bool):
            raise InvalidInput("dry_run is true or false")
        if findings is not None and (not isinstance(findings, list)
                                     or not all(isinstance(f, str) for f in findings)):
            raise InvalidInput('findings is a list of finding codes, e.g. ["STALE"]')
        if model is not None and not isinstance(model, str):
            raise InvalidInput("model is a model name")
        return await governance.cleanup(apply=not dry_run, overrides=body, model=model,
                                        findings=findings)

    @api.get("/doctor")
    async def examine() -> dict[str, Any]:
        """The registry against the store (temp files younger than an hour may be uploads),
        and warnings about free disk space."""
        problems = await anyio.to_thread.run_sync(lambda: doctor.examine(
            catalog.registry, catalog.store, temp_older_than=3600))
        warnings = await anyio.to_thread.run_sync(doctor.disk_warnings, catalog.registry, disks)
        return {"problems": [p.to_json() for p in problems],
                "warnings": [w.to_json() for w in warnings]}

    @api.post("/models/{name}/versions/{version}/archive")
    async def archive(name: str, version: str) -> dict[str, Any]:
        return (await lifecycle.archive(name, version)).to_json()

    @api.post("/models/{name}/versions/{version}/unarchive")
    async def unarchive(name: str, version: str) -> dict[str, Any]:
        return (await lifecycle.unarchive(name, version)).to_json()

    return api
