"""``PredictionRouter``: the path of one prediction, top to bottom.

resolve (name + version | alias | traffic policy | production) -> track (usage, latency, outcome)
-> decode -> acquire (loaded model) -> check inputs -> predict (worker thread, timeout)
-> check outputs -> log a sample -> a shadow job, which the API dispatches once the response
is sent.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.to_thread

from model_manager.errors import InvalidOutput, NotFound, PredictionTimeout, Saturated
from model_manager.registry import ModelRecord, VersionRecord
from model_manager.runtimes import Runtime
from model_manager.runtimes.base import is_out_of_process
from model_manager.serving.batching import Batcher, BatchPolicy
from model_manager.serving.cache import LoadedModel, ModelCache
from model_manager.serving.inference import InferenceRequest, InferenceResponse, InferOutput
from model_manager.serving.model_settings import SettingsCache
from model_manager.serving.placement import INLINE_MAX_ELEMENTS, Placement
from model_manager.serving.routes import ModelRoutes, RouteTable
from model_manager.serving.shadow import ShadowDispatcher, ShadowJob
from model_manager.serving.validation import (
    ALLOW_NON_FINITE,
    OutputRules,
    check_inputs,
    check_outputs,
    select_outputs,
)
from model_manager.telemetry import PredictionLog
from model_manager.telemetry.drift import DriftMonitor
from model_manager.telemetry.usage import Tracking, UsageRecorder
from model_manager.types import Array, Tensors, VersionKey


class PredictionRouter:
    def __init__(self, routes: RouteTable, cache: ModelCache, usage: UsageRecorder,
                 predict_timeout: float, settings: SettingsCache, predictions: PredictionLog,
                 shadows: ShadowDispatcher, inference_threads: int, model_concurrency: int = 4,
                 model_queue: int = 64, drift: DriftMonitor | None = None) -> None:
        self._routes = routes
        self._cache = cache
        self._usage = usage
        self._timeout = predict_timeout
        self._settings = settings
        self._predictions = predictions
        self._shadows = shadows
        self._limiters: dict[VersionKey, anyio.CapacityLimiter] = {}
        self._pool = anyio.CapacityLimiter(inference_threads)
        self._concurrency = model_concurrency
        self._max_in_progress = model_concurrency + model_queue
        self._in_progress: dict[str, int] = {}
        """Predictions running in worker threads at once, over all versions: as many as there
        are cores, since more would only take turns on them."""
        self._placements: dict[VersionKey, Placement] = {}
        """Where each version's predictions run (``placement``)."""
        self._batchers: dict[VersionKey, tuple[LoadedModel, Batcher]] = {}
        self._drift = drift

    async def resolve(self, name: str, ref: str | None) -> VersionRecord:
        """The servable version ``ref`` names (a number or an alias; None: the default route)."""
        return _servable(await self._routes.get(name), name, ref)

    async def model(self, name: str) -> ModelRecord:
        """The model's versions and aliases as the router serves them."""
        return (await self._routes.get(name)).model

    async def predict(self, name: str, ref: str | None, decode: Callable[[], InferenceRequest],
                      routing_key: str | None = None
                      ) -> tuple[InferenceRequest, InferenceResponse, ShadowJob | None]:
        """Serve one request; ``decode`` parses its body once the version is known, so a
        malformed body counts against that version as bad input. Without a version, the
        model's traffic policy (if any) picks one: by ``routing_key`` (the X-Routing-Key header)
        or the request's sticky-key parameter, else at random by weight; the body is then parsed
        first, as the key may be in it. The shadow job, if the policy samples any shadow, is
        for the caller to ``dispatch`` once the response is sent."""
        known = self._routes.get_known(name) or await self._routes.read(name)
        version, request, routes = self._route(known, name, ref, decode, routing_key)
        with self._usage.track((name, version.number)) as tracking:
            self._admit(name)
            try:
                request = request or decode()
                # Held and released by hand, not by ``async with cache.acquire``: most
                # requests find their model loaded and wait for nothing.
                model = self._cache.hold_loaded(version) or await self._cache.hold(version)
                failure: BaseException | None = None
                try:
                    plan = model.plan or self._plan(model)
                    inputs = check_inputs(plan.signature, request, plan.allow_non_finite)
                    names = select_outputs(plan.signature, request)
                    results = self._run_inline(model, plan, inputs, names, tracking)
                    if results is None:
                        results = await self._run(model, plan, inputs, names, tracking)
                except BaseException as exc:
                    failure = exc
                    raise
                finally:
                    if not self._cache.release_now(model, failure):
                        await self._cache.release(model, failure)
                outputs = self._checked(plan, names, results, tracking)
            finally:
                self._in_progress[name] -= 1
        if self._drift is not None:
            self._drift.observe(model.key, inputs, results)
        prediction_id = request.id or _IDS.take()
        logged = random.random() < self._settings.get(name).prediction_log_rate
        if logged:
            self._predictions.record(name, prediction_id, version.number, "primary", results)
        shadows = _sampled_shadows(routes)
        job = ShadowJob(name, version.number, shadows, request, results,
                        tracking.inference or 0.0, prediction_id, logged) if shadows else None
        return request, InferenceResponse(name, version.number, tuple(outputs),
                                          prediction_id), job

    def _admit(self, name: str) -> None:
        """Count the request against its model's limit of requests running and queued (the
        caller counts it out); past it, 429 (the other models are not held up by this one's
        backlog)."""
        in_progress = self._in_progress.get(name, 0)
        if in_progress >= self._max_in_progress:
            raise Saturated(f"model {name!r} has {in_progress} requests running or queued, its "
                            f"limit (--model-concurrency + --model-queue); retry shortly")
        self._in_progress[name] = in_progress + 1

    def is_busy(self, name: str) -> bool:
        """Whether the model's requests are queueing (its shadow copies are then shed)."""
        return self._in_progress.get(name, 0) > self._concurrency

    async def dispatch(self, job: ShadowJob) -> None:
        """Hand a shadow job to the shadow workers (never waits; a full queue drops it).
        A coroutine so that it runs on the event loop, where the workers live. While the
        model's own requests queue, shadow copies are shed first."""
        if self.is_busy(job.model):
            self._shadows.drop(job)
        else:
            self._shadows.submit(job)

    def _route(self, routes: ModelRoutes, name: str, ref: str | None,
               decode: Callable[[], InferenceRequest], routing_key: str | None
               ) -> tuple[VersionRecord, InferenceRequest | None, ModelRoutes | None]:
        """The version to serve; with the model's routes when its traffic policy chose it."""
        policy = None if ref else routes.policy
        if policy is None:
            return _servable(routes, name, ref), None, None
        request = decode()  # the routing key may be one of its parameters
        key = routing_key or request.parameters.get(policy.sticky_key)
        chosen = policy.choose(None if key is None else str(key))
        return _servable(routes, name, str(chosen)), request, routes

    def _run_inline(self, model: LoadedModel, plan: Plan, inputs: Tensors, names: Sequence[str],
                    tracking: Tracking) -> dict[str, Array] | None:
        """Run the model on the event loop when it is known to take microseconds (a trip to a
        worker thread would cost more than the prediction; ``Placement`` decides) and nothing
        else is asked of it; None: it is for ``_run``."""
        placement = plan.placement
        if not placement.inline or plan.out_of_process or self._batcher(model, plan) is not None \
                or _elements(inputs) > INLINE_MAX_ELEMENTS:
            return None
        results, seconds = _timed(model.runtime, inputs, names)
        placement.ran_inline(seconds)
        tracking.inference = seconds
        return results

    def _plan(self, model: LoadedModel) -> Plan:
        """What the model's predictions need that its load decides, made on its first one."""
        placement = self._placements.get(model.key)
        if placement is None:  # kept across loads: how long the version takes
            placement = self._placements[model.key] = Placement()
        model.plan = plan = Plan(model, placement)
        return plan

    async def _run(self, model: LoadedModel, plan: Plan, inputs: Tensors, names: Sequence[str],
                   tracking: Tracking) -> dict[str, Array]:
        """Run the model that ``_run_inline`` did not: batched, awaited in its own process, or
        in a worker thread, bounded per version, with the prediction timeout."""
        batcher = self._batcher(model, plan)
        if batcher is not None:
            results, seconds = await batcher.predict(inputs, names)
        elif (predict_async := getattr(model.runtime, "predict_async", None)) is not None:
            results, seconds = await self._awaited(model, predict_async, inputs, names)
        else:
            results, seconds = await self._in_thread(model, inputs, names)
            plan.placement.ran_in_thread(seconds)
        tracking.inference = seconds
        return results

    def _batcher(self, model: LoadedModel, plan: Plan) -> Batcher | None:
        """The version's batcher when batching is on for it (version metadata, else the
        model's settings, which may change while it is loaded)."""
        policy = plan.batching or self._settings.get(model.key[0]).batching
        if policy is None:
            return None
        found = self._batchers.get(model.key)
        if found is None or found[0] is not model or found[1].policy != policy:
            batcher = Batcher(policy, functools.partial(self._in_thread, model),
                              functools.partial(self._usage.on_batch, model.key))
            self._batchers[model.key] = found = (model, batcher)
        return found[1]

    async def _in_thread(self, model: LoadedModel, inputs: Tensors,
                         names: Sequence[str]) -> tuple[dict[str, Array], float]:
        per_version = self._limiters.setdefault(model.key,
                                                anyio.CapacityLimiter(self._concurrency))
        try:
            with anyio.fail_after(self._timeout):
                async with per_version:
                    return await anyio.to_thread.run_sync(_timed, model.runtime, inputs, names,
                                                          limiter=self._pool,
                                                          abandon_on_cancel=True)
        except TimeoutError:
            raise self._timed_out(model) from None

    def _timed_out(self, model: LoadedModel) -> PredictionTimeout:
        return PredictionTimeout(f"version {model.key[1]} of {model.key[0]!r} took longer than "
                                 f"the {self._timeout:g}s prediction timeout")

    async def _awaited(self, model: LoadedModel,
                       predict: Callable[[Tensors, Sequence[str]], Awaitable[dict[str, Array]]],
                       inputs: Tensors, names: Sequence[str]) -> tuple[dict[str, Array], float]:
        """Run a model that works in another process, awaiting its answer on the event loop
        (the runtime serialises its callers), with the prediction timeout."""
        started = time.perf_counter()
        try:
            with anyio.fail_after(self._timeout):
                results = await predict(inputs, names)
        except TimeoutError:
            raise self._timed_out(model) from None
        return results, time.perf_counter() - started

    def _checked(self, plan: Plan, names: Sequence[str], results: Tensors,
                 tracking: Tracking) -> list[InferOutput]:
        """Outputs that pass the version's checks; violations are rejected or flagged per policy."""
        outputs, violations = check_outputs(plan.signature, plan.rules, names, results)
        if violations:
            rejected = [v.message for v in violations if plan.rules.rejects(v)]
            if rejected:
                raise InvalidOutput("the model's output was rejected: " + "; ".join(rejected))
            tracking.outcome = "invalid_output"
            tracking.detail = "; ".join(v.message for v in violations)
        return outputs


class Plan:
    """What a loaded version's predictions need that its load decides (``LoadedModel.plan``):
    looked up once, not on every request. A new load of the version gets a new plan."""

    __slots__ = ("allow_non_finite", "batching", "out_of_process", "placement", "rules",
                 "signature")

    def __init__(self, model: LoadedModel, placement: Placement) -> None:
        metadata = model.version.metadata
        self.signature = model.runtime.signature
        self.allow_non_finite = metadata.get(ALLOW_NON_FINITE) is True
        self.rules = OutputRules.from_metadata(metadata)
        raw = metadata.get("batching")
        self.batching = BatchPolicy.from_json(raw) if raw else None
        """The version's own batching, which the model's settings cannot change; None: theirs."""
        self.out_of_process = is_out_of_process(model.runtime)
        self.placement = placement


class RandomIds:
    """Random 128-bit ids, as random as uuid4's, cut from one read of the OS's random source
    per 256: each read is a system call, which every request would otherwise make. A forked
    child starts on ids of its own."""

    def __init__(self) -> None:
        self._pool: list[str] = []
        os.register_at_fork(after_in_child=self._pool.clear)

    def take(self) -> str:
        if not self._pool:
            drawn = os.urandom(16 * 256).hex()
            self._pool.extend(drawn[i:i + 32] for i in range(0, len(drawn), 32))
        return self._pool.pop()  # atomic: no two takers get the same id


_IDS = RandomIds()


def _servable(routes: ModelRoutes, name: str, ref: str | None) -> VersionRecord:
    version = routes.model.resolve(ref)
    if version.archived:
        raise NotFound(f"version {version.number} of {name!r} is archived")
    return version


def _sampled_shadows(routes: ModelRoutes | None) -> tuple[VersionRecord, ...]:
    """The shadow versions the traffic policy samples for one request (none without one)."""
    if routes is None or routes.policy is None:
        return ()
    sampled = set(routes.policy.sampled_shadows())
    return tuple(v for v in routes.model.versions if v.number in sampled)


def _timed(runtime: Runtime, inputs: Tensors, names: Sequence[str]) -> tuple[dict[str, Array], float]:
    started = time.perf_counter()
    results = runtime.predict(inputs, names)
    return results, time.perf_counter() - started


def _elements(inputs: Tensors) -> int:
    count = 0
    for array in inputs.values():  # a loop: a generator costs twice as much on one input
        count += array.size
    return count
