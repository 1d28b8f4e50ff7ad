"""Open Inference Protocol v2 REST: health, metadata, infer, and the repository extension."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from model_manager import __version__
from model_manager.api.bodies import json_object
from model_manager.registry import Registry, VersionRecord
from model_manager.runtimes import FORMATS
from model_manager.serving import ModelCache, PredictionRouter, State, VersionLifecycle

EXTENSIONS = ["binary_tensor_data", "model_repository"]


class Readiness:
    """Not ready until start-up work (preloading) is done."""

    def __init__(self) -> None:
        self.is_ready = False
        self.reason = "starting"
        self.listeners: list[Callable[[bool], None]] = []
        """Told each change (the gRPC health service)."""

    def set(self, is_ready: bool, reason: str = "") -> None:
        self.is_ready, self.reason = is_ready, reason
        for listener in self.listeners:
            listener(is_ready)


def v2_routes(router: PredictionRouter, registry: Registry, cache: ModelCache,
              lifecycle: VersionLifecycle, readiness: Readiness) -> APIRouter:
    api = APIRouter(prefix="/v2")

    @api.get("/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @api.get("/health/ready")
    async def ready() -> Response:
        # A registry outage leaves the server ready: it serves its loaded models with their last
        # known routes, and taking every replica out of a load balancer at once would not help.
        if not readiness.is_ready:
            return JSONResponse({"ready": False, "reason": readiness.reason}, 503)
        return JSONResponse({"ready": True, "registry": registry.status.state})

    @api.get("")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "ml-model-manager", "version": __version__, "extensions": EXTENSIONS}

    @api.get("/models/{name}")
    @api.get("/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> dict[str, Any]:
        resolved = await router.resolve(name, version)
        model = await router.model(name)
        served = [str(v.number) for v in model.versions if not v.archived]
        return metadata_of(resolved, served)

    @api.get("/models/{name}/ready")
    @api.get("/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> Response:
        # Ready means servable: loadable (a version not loaded yet loads on its first request)
        # and not failed.
        resolved = await router.resolve(name, version)
        state = cache.state_of(name, resolved.number)
        body = {"name": name, "version": str(resolved.number), "ready": state.state is not State.FAILED}
        if state.state is State.FAILED:
            return JSONResponse({**body, "reason": state.reason}, 503)
        return JSONResponse(body)

    @api.post("/repository/index")
    async def repository_index(request: Request) -> list[dict[str, Any]]:
        only_ready = bool(json_object(await request.body()).get("ready", False))
        models = await anyio.to_thread.run_sync(registry.list_models)
        index = []
        for model in models:
            for v in model.versions:
                state = cache.state_of(model.name, v.number)
                if v.archived or (only_ready and state.state is not State.READY):
                    continue
                index.append({"name": model.name, "version": str(v.number),
                              "state": state.state.value, "reason": state.reason or "",
                              "loaded_bytes": state.size, "pinned": v.pinned})
        return index

    @api.post("/repository/models/{name}/load")
    async def repository_load(name: str) -> dict[str, Any]:
        version = await router.resolve(name, None)
        entry = await lifecycle.load(version)
        return {"name": name, "version": str(version.number), "state": "READY",
                "loaded_bytes": entry.size}

    @api.post("/repository/models/{name}/unload")
    async def repository_unload(name: str) -> dict[str, Any]:
        unloaded = await lifecycle.unload(name)
        return {"name": name, "unloaded": [str(number) for number in unloaded]}

    return api


def metadata_of(version: VersionRecord, served: list[str]) -> dict[str, Any]:
    fmt = FORMATS.get(version.format)
    platform = fmt.platform if fmt is not None else version.format
    signature = version.signature.to_json()
    metadata = {"name": version.model, "versions": served, "platform": platform,
                "inputs": signature["inputs"], "outputs": signature["outputs"]}
    if "parameters" in signature:
        metadata["parameters"] = signature["parameters"]
    return metadata
