"""``PredictionRouter``: the path of one prediction, top to bottom.

resolve (name + version | alias | default route) -> acquire (loaded model) -> validate inputs
-> predict (in a worker thread) -> type outputs.
"""

from __future__ import annotations

import anyio.to_thread

from model_manager.errors import NotFound
from model_manager.registry import Registry, VersionRecord
from model_manager.serving.cache import ModelCache
from model_manager.serving.inference import InferenceRequest, InferenceResponse
from model_manager.serving.validation import check_inputs, select_outputs, type_outputs


class PredictionRouter:
    def __init__(self, registry: Registry, cache: ModelCache) -> None:
        self._registry = registry
        self._cache = cache

    async def resolve(self, name: str, ref: str | None) -> VersionRecord:
        """The servable version ``ref`` names (a number or an alias; None: the default route)."""
        version = await anyio.to_thread.run_sync(self._registry.get_version, name, ref)
        if version.archived:
            raise NotFound(f"version {version.number} of {name!r} is archived")
        return version

    async def predict(self, name: str, ref: str | None,
                      request: InferenceRequest) -> InferenceResponse:
        version = await self.resolve(name, ref)
        async with self._cache.acquire(version) as model:
            signature = model.runtime.signature
            inputs = check_inputs(signature, request)
            names = select_outputs(signature, request)
            results = await anyio.to_thread.run_sync(model.runtime.predict, inputs, names)
        outputs = type_outputs(signature, names, results)
        return InferenceResponse(name, version.number, tuple(outputs), request.id)
