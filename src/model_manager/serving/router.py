"""``PredictionRouter``: the path of one prediction, top to bottom.

resolve (name + version | alias | traffic policy | production) -> track (usage, latency, outcome)
-> decode -> acquire (loaded model) -> check inputs -> predict (worker thread, timeout)
-> check outputs -> log a sample -> a shadow job, which the API dispatches once the response
is sent.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence

import anyio
import anyio.to_thread

from model_manager.errors import InvalidOutput, NotFound, PredictionTimeout
from model_manager.registry import Registry, VersionRecord
from model_manager.serving.cache import LoadedModel, ModelCache
from model_manager.serving.inference import InferenceRequest, InferenceResponse, InferOutput
from model_manager.serving.model_settings import SettingsCache
from model_manager.serving.shadow import ShadowDispatcher, ShadowJob
from model_manager.serving.traffic import TrafficPolicy
from model_manager.serving.validation import OutputRules, check_inputs, check_outputs, select_outputs
from model_manager.telemetry import PredictionLog
from model_manager.telemetry.usage import Tracking, UsageRecorder
from model_manager.types import Array, Tensors, VersionKey

# Predictions one version may run at once; a hung model holds at most these worker threads.
PER_VERSION_THREADS = 4


class PredictionRouter:
    def __init__(self, registry: Registry, cache: ModelCache, usage: UsageRecorder,
                 predict_timeout: float, settings: SettingsCache, predictions: PredictionLog,
                 shadows: ShadowDispatcher) -> None:
        self._registry = registry
        self._cache = cache
        self._usage = usage
        self._timeout = predict_timeout
        self._settings = settings
        self._predictions = predictions
        self._shadows = shadows
        self._limiters: dict[VersionKey, anyio.CapacityLimiter] = {}
        self._rules: dict[VersionKey, OutputRules] = {}

    async def resolve(self, name: str, ref: str | None) -> VersionRecord:
        """The servable version ``ref`` names (a number or an alias; None: the default route)."""
        version = await anyio.to_thread.run_sync(self._registry.get_version, name, ref)
        if version.archived:
            raise NotFound(f"version {version.number} of {name!r} is archived")
        return version

    async def predict(self, name: str, ref: str | None, decode: Callable[[], InferenceRequest],
                      routing_key: str | None = None
                      ) -> tuple[InferenceRequest, InferenceResponse, ShadowJob | None]:
        """Serve one request; ``decode`` parses its body once the version is known, so a
        malformed body counts against that version as bad input. Without a version, the
        model's traffic policy (if any) picks one: by ``routing_key`` (the X-Routing-Key header)
        or the request's sticky-key parameter, else at random by weight; the body is then parsed
        first, as the key may be in it. The shadow job, if the policy samples any shadow, is
        for the caller to ``dispatch`` once the response is sent."""
        version, request, policy = await self._route(name, ref, decode, routing_key)
        with self._usage.track((name, version.number)) as tracking:
            request = request or decode()
            async with self._cache.acquire(version) as model:
                signature = model.runtime.signature
                inputs = check_inputs(signature, request)
                names = select_outputs(signature, request)
                results = await self._run(model, inputs, names, tracking)
            outputs = self._checked(model, names, results, tracking)
        prediction_id = request.id or uuid.uuid4().hex
        logged = random.random() < self._settings.get(name).prediction_log_rate
        if logged:
            self._predictions.record(name, prediction_id, version.number, "primary", results)
        shadows = tuple(policy.sampled_shadows()) if policy else ()
        job = ShadowJob(name, version.number, shadows, request, results,
                        tracking.inference or 0.0, prediction_id, logged) if shadows else None
        return request, InferenceResponse(name, version.number, tuple(outputs),
                                          prediction_id), job

    async def dispatch(self, job: ShadowJob) -> None:
        """Hand a shadow job to the shadow workers (never waits; a full queue drops it).
        A coroutine so that it runs on the event loop, where the workers live."""
        self._shadows.submit(job)

    async def _route(self, name: str, ref: str | None, decode: Callable[[], InferenceRequest],
                     routing_key: str | None
                     ) -> tuple[VersionRecord, InferenceRequest | None, TrafficPolicy | None]:
        stored = None if ref else await anyio.to_thread.run_sync(self._registry.get_policy, name)
        if stored is None:
            return await self.resolve(name, ref), None, None
        policy = TrafficPolicy.from_json(stored)
        request = decode()  # the routing key may be one of its parameters
        key = routing_key or request.parameters.get(policy.sticky_key)
        chosen = policy.choose(None if key is None else str(key))
        return await self.resolve(name, str(chosen)), request, policy

    async def _run(self, model: LoadedModel, inputs: Tensors, names: Sequence[str],
                   tracking: Tracking) -> dict[str, Array]:
        limiter = self._limiters.setdefault(model.key, anyio.CapacityLimiter(PER_VERSION_THREADS))
        started = time.perf_counter()
        try:
            with anyio.fail_after(self._timeout):
                return await anyio.to_thread.run_sync(model.runtime.predict, inputs, names,
                                                      limiter=limiter, abandon_on_cancel=True)
        except TimeoutError:
            raise PredictionTimeout(f"version {model.key[1]} of {model.key[0]!r} took longer than "
                                    f"the {self._timeout:g}s prediction timeout") from None
        finally:
            tracking.inference = time.perf_counter() - started

    def _checked(self, model: LoadedModel, names: Sequence[str], results: Tensors,
                 tracking: Tracking) -> list[InferOutput]:
        """Outputs that pass the version's checks; violations are rejected or flagged per policy."""
        rules = self._rules.get(model.key)
        if rules is None:
            rules = self._rules[model.key] = OutputRules.from_metadata(model.version.metadata)
        outputs, violations = check_outputs(model.runtime.signature, rules, names, results)
        rejected = [v.message for v in violations if rules.rejects(v)]
        if rejected:
            raise InvalidOutput("the model's output was rejected: " + "; ".join(rejected))
        if violations:
            tracking.outcome = "invalid_output"
            tracking.detail = "; ".join(v.message for v in violations)
        return outputs
