"""Per-version health from load state, golden probes and the recent window of requests.

A version is ``unhealthy`` when it failed to load, its golden probe fails, or most of its recent
requests fail; ``degraded`` when its error rate, invalid-output rate or p99 latency over the window
passes its thresholds, or an input column drifted from its reference; ``idle`` when it is loaded
but had no request in the window; ``unknown`` when nothing is known yet; else ``healthy``.
Thresholds come from the server's settings and may be overridden per version in its metadata
(``{"health": {"max_error_rate": 0.05, "max_invalid_rate": 0.01, "max_p99_ms": 500}}``).

Golden probes (see ``probes.py``) run after every load and every probe interval while loaded;
a failing probe makes the version unhealthy.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread

from model_manager.probes import Probe, ProbeResult
from model_manager.registry import VersionRecord
from model_manager.serving.cache import LoadedModel, ModelCache, State
from model_manager.telemetry.events import EventLog
from model_manager.telemetry.usage import UsageRecorder, WindowStats
from model_manager.types import VersionKey

UNHEALTHY_RATE = 0.5


@dataclasses.dataclass(frozen=True)
class Thresholds:
    max_error_rate: float = 0.05
    max_invalid_rate: float = 0.01
    max_p99: float = 1.0
    """Seconds."""

    def for_version(self, metadata: dict[str, Any]) -> Thresholds:
        spec = metadata.get("health") or {}
        return Thresholds(float(spec.get("max_error_rate", self.max_error_rate)),
                          float(spec.get("max_invalid_rate", self.max_invalid_rate)),
                          float(spec["max_p99_ms"]) / 1000 if "max_p99_ms" in spec else self.max_p99)


class HealthMonitor:
    def __init__(self, cache: ModelCache, usage: UsageRecorder, events: EventLog,
                 thresholds: Thresholds, window: float,
                 clock: Callable[[], float] = time.time,
                 drift: Callable[[VersionKey], list[str]] | None = None) -> None:
        self._cache = cache
        self._drift = drift
        """The version's drifted inputs, as findings."""
        self._usage = usage
        self._events = events
        self._thresholds = thresholds
        self._window = window
        self._clock = clock
        self._probes: dict[VersionKey, ProbeResult] = {}

    def last_probe(self, key: VersionKey) -> ProbeResult | None:
        return self._probes.get(key)

    async def probe(self, entry: LoadedModel) -> ProbeResult | None:
        """Run the version's golden probe, if it has one, in a worker thread."""
        probe = Probe.from_metadata(entry.version.metadata)
        if probe is None:
            return None
        result = await anyio.to_thread.run_sync(probe.run, entry.runtime, self._clock())
        self._probes[entry.key] = result
        if not result.passed:
            self._events.emit("probe_failed", model=entry.key[0], version=entry.key[1],
                              detail=result.detail)
        return result

    async def probe_loaded(self) -> None:
        for entry in self._cache.loaded():
            await self.probe(entry)

    def forget(self, key: VersionKey) -> None:
        self._probes.pop(key, None)

    def version_health(self, version: VersionRecord) -> dict[str, Any]:
        key = (version.model, version.number)
        stats = self._usage.window(key, self._window)
        status, reasons = self._assess(version, stats)
        probe = self._probes.get(key)
        return {"version": version.number, "status": status, "reasons": reasons,
                "state": self._cache.state_of(*key).state.value,
                "window_seconds": self._window, "requests": stats.requests,
                "error_rate": round(stats.error_rate, 4),
                "invalid_output_rate": round(stats.invalid_rate, 4),
                "p99_ms": None if stats.p99 is None else round(stats.p99 * 1000, 3),
                "last_probe": probe.to_json() if probe else None,
                "drifted_inputs": self._drift(key) if self._drift is not None else []}

    def _assess(self, version: VersionRecord, stats: WindowStats) -> tuple[str, list[str]]:
        key = (version.model, version.number)
        state = self._cache.state_of(*key)
        limits = self._thresholds.for_version(version.metadata)
        unhealthy: list[str] = []
        degraded: list[str] = []
        if state.state is State.FAILED:
            unhealthy.append(f"failed to load: {state.reason}")
        probe = self._probes.get(key)
        if probe is not None and not probe.passed:
            unhealthy.append(f"golden probe failed: {probe.detail}")
        window = f"over the last {self._window:g}s"
        for rate, limit, what in ((stats.error_rate, limits.max_error_rate, "errors"),
                                  (stats.invalid_rate, limits.max_invalid_rate, "invalid outputs")):
            if stats.judged_requests and rate > limit:
                reason = (f"{what} in {rate:.0%} of {stats.judged_requests} requests {window} "
                          f"(threshold {limit:.0%})")
                last = self._usage.last_error(key, "invalid_output" if what != "errors" else None)
                reason += f"; last: {last}" if last else ""
                (unhealthy if rate >= UNHEALTHY_RATE else degraded).append(reason)
        if self._drift is not None:
            degraded.extend(self._drift(key))
        if stats.p99 is not None and stats.p99 > limits.max_p99:
            degraded.append(f"p99 latency {stats.p99 * 1000:.1f} ms {window} "
                            f"(threshold {limits.max_p99 * 1000:.0f} ms)")
        if unhealthy:
            return "unhealthy", unhealthy + degraded
        if degraded:
            return "degraded", degraded
        if stats.requests:
            return "healthy", []
        if state.state is State.READY:
            return "idle", [f"no requests {window}"]
        return "unknown", ["not loaded and no requests " + window]
