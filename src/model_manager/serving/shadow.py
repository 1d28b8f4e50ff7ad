"""``ShadowDispatcher``: runs shadow versions on copies of served requests, off the caller's path.

The API hands a ``ShadowJob`` over once the response has been sent. Each model has a bounded
queue and one worker; a full queue drops the job (counted per pair, and in
``model_manager_shadow_requests_total{outcome="dropped"}``) instead of growing. All shadow
predictions share one worker thread, so shadows take at most one core's worth of work from the
served traffic, and their errors and slowness are only counted, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Mapping

import anyio
import anyio.to_thread

from model_manager.registry import VersionRecord
from model_manager.runtimes import Runtime
from model_manager.serving.cache import ModelCache
from model_manager.serving.inference import InferenceRequest
from model_manager.serving.validation import check_inputs
from model_manager.telemetry import Comparison, Metrics, PredictionLog, ShadowStats, compare
from model_manager.types import Array

log = logging.getLogger(__name__)

QUEUE_LIMIT = 64
"""Shadow jobs waiting per model; more are dropped."""
BATCH = 16
"""Jobs a worker takes in one go."""


@dataclasses.dataclass(frozen=True)
class ShadowJob:
    """A served request to replay on shadow versions."""

    model: str
    primary: int
    shadows: tuple[VersionRecord, ...]
    request: InferenceRequest
    outputs: Mapping[str, Array]
    """What the primary answered, by output name."""
    primary_seconds: float
    """The primary's inference time, to set beside the shadow's."""
    prediction_id: str
    logged: bool
    """Whether the primary's answer went to the prediction log (the shadows' then go too)."""


class ShadowDispatcher:
    def __init__(self, cache: ModelCache, stats: ShadowStats, predictions: PredictionLog,
                 metrics: Metrics, timeout: float, queue_limit: int = QUEUE_LIMIT) -> None:
        self._cache = cache
        self._stats = stats
        self._predictions = predictions
        self._metrics = metrics
        self._timeout = timeout
        self._queue_limit = queue_limit
        self._queues: dict[str, asyncio.Queue[ShadowJob]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._limiter = anyio.CapacityLimiter(1)

    def submit(self, job: ShadowJob) -> None:
        """Queue the job for the model's worker, or drop it when the queue is full."""
        queue = self._queues.get(job.model)
        if queue is None:
            queue = self._queues[job.model] = asyncio.Queue(self._queue_limit)
            worker = asyncio.create_task(self._work(queue), name=f"shadow:{job.model}")
            self._workers.add(worker)
        try:
            queue.put_nowait(job)
        except asyncio.QueueFull:
            self.drop(job)

    def drop(self, job: ShadowJob) -> None:
        """Count the job's shadow copies as dropped (a full queue, or a model under load)."""
        for version in job.shadows:
            self._stats.drop(job.model, job.primary, version.number)
            self._metrics.on_shadow((job.model, version.number), "dropped")

    async def close(self) -> None:
        """Stop the workers; queued jobs are dropped uncounted (the server is stopping)."""
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers.clear()
        self._queues.clear()

    async def _work(self, queue: asyncio.Queue[ShadowJob]) -> None:
        """Take what is queued (up to a batch) and replay it version by version, each
        version's share in one trip to the worker thread."""
        while True:
            jobs = [await queue.get()]
            while len(jobs) < BATCH and not queue.empty():
                jobs.append(queue.get_nowait())
            shadows = {v.number: v for job in jobs for v in job.shadows}
            for number in sorted(shadows):
                await self._replay(shadows[number], [job for job in jobs if any(
                    v.number == number for v in job.shadows)])

    async def _replay(self, version: VersionRecord, jobs: list[ShadowJob]) -> None:
        number = version.number
        try:
            async with self._cache.acquire(version) as model:
                with anyio.fail_after(self._timeout * len(jobs)):
                    results = await anyio.to_thread.run_sync(
                        _replay_all, model.runtime, jobs, limiter=self._limiter,
                        abandon_on_cancel=True)
        except Exception as exc:  # a shadow's failure is counted, never raised
            results = [exc] * len(jobs)
        for job, result in zip(jobs, results, strict=True):
            self._count(job, number, result)

    def _count(self, job: ShadowJob, number: int, result: _Replayed | Exception) -> None:
        key = (job.model, number)
        if isinstance(result, Exception):
            log.info("shadow %s v%d failed: %s", job.model, number,
                     getattr(result, "message", result))
            self._stats.add(job.model, job.primary, number, None, job.primary_seconds, 0.0)
            self._metrics.on_shadow(key, "error")
            return
        outputs, seconds, comparison = result
        self._stats.add(job.model, job.primary, number, comparison, job.primary_seconds, seconds)
        self._metrics.on_shadow(key, "ok")
        if job.logged:
            self._predictions.record(job.model, job.prediction_id, number, "shadow", outputs)


_Replayed = tuple[dict[str, Array], float, Comparison]
"""A shadow's outputs, its inference seconds, and how they compare with the primary's."""


def _replay_all(runtime: Runtime, jobs: list[ShadowJob]) -> list[_Replayed | Exception]:
    """Run each job's request on the shadow and compare (in a worker thread); a failure is
    returned, not raised, so one bad request spoils only its own comparison."""
    signature = runtime.signature
    results: list[_Replayed | Exception] = []
    for job in jobs:
        try:
            inputs = check_inputs(signature, job.request)
            started = time.perf_counter()
            outputs = runtime.predict(inputs, signature.output_names())
            seconds = time.perf_counter() - started
            results.append((outputs, seconds, compare(job.outputs, outputs)))
        except Exception as exc:
            results.append(exc)
    return results
