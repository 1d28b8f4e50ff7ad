"""Per-version health from load state, golden probes and the recent window of requests."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_manager.health import HealthMonitor, Thresholds
from model_manager.registry import Registry, VersionRecord
from model_manager.runtimes import Signature, TensorSpec
from model_manager.serving import LoadedModel, State, VersionState
from model_manager.telemetry import EventLog, Metrics, UsageRecorder, UsageStore
from model_manager.types import Array, Tensors, VersionKey

SIGNATURE = Signature((TensorSpec("input", "FP32", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),))
WINDOW = 60.0
MS = 0.001
PROBE = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}],
         "expected": {"label": [0]}}


def version(number: int = 1, metadata: dict[str, Any] | None = None) -> VersionRecord:
    return VersionRecord("iris", number, "0" * 64, 100, "onnx", SIGNATURE, metadata or {},
                         datetime.now(UTC), False)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeCache:
    """What the monitor asks of the model cache: each version's state."""

    def __init__(self) -> None:
        self.states: dict[VersionKey, VersionState] = {}

    def state_of(self, model: str, number: int) -> VersionState:
        return self.states.get((model, number), VersionState(State.UNAVAILABLE))

    def loaded(self) -> list[LoadedModel]:
        return []


class LabelRuntime:
    """Answers every input with the same label."""

    signature = SIGNATURE

    def __init__(self, label: int) -> None:
        self.label = label

    def predict(self, inputs: Tensors, outputs: Sequence[str]) -> dict[str, Array]:
        return {"label": np.full(len(inputs["input"]), self.label, np.int64)}

    def unload(self) -> None:
        pass


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def stream() -> io.StringIO:
    """The StringIO an EventLog writes to."""
    return io.StringIO()


@pytest.fixture
def events(stream: io.StringIO) -> EventLog:
    return EventLog(stream=stream)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def usage(tmp_path: Path, events: EventLog, clock: Clock) -> Iterator[UsageRecorder]:
    registry = Registry.from_url(f"sqlite:///{tmp_path}/r.db")  # never flushed to: no schema needed
    yield UsageRecorder(UsageStore(registry), Metrics(), events, clock)
    registry.close()


@pytest.fixture
def cache() -> FakeCache:
    return FakeCache()


@pytest.fixture
def monitor(cache: FakeCache, usage: UsageRecorder, events: EventLog, clock: Clock) -> HealthMonitor:
    return HealthMonitor(cache, usage, events, Thresholds(), WINDOW, clock)  # type: ignore[arg-type]


def record(usage: UsageRecorder, n: int, outcome: str = "ok", seconds: float = 10 * MS,
           detail: str | None = None, number: int = 1) -> None:
    for _ in range(n):
        usage.record(("iris", number), outcome, seconds, seconds / 2, detail)


def ready(cache: FakeCache, number: int = 1) -> None:
    cache.states["iris", number] = VersionState(State.READY, size=100)


# ---- status ------------------------------------------------------------------------------------


def test_nothing_known_is_unknown(monitor: HealthMonitor) -> None:
    health = monitor.version_health(version())

    assert health["status"] == "unknown"
    assert health["reasons"] == ["not loaded and no requests over the last 60s"]
    assert health["state"] == "UNAVAILABLE"
    assert (health["requests"], health["error_rate"], health["p99_ms"]) == (0, 0.0, None)
    assert health["last_probe"] is None


def test_loaded_without_requests_is_idle(monitor: HealthMonitor, cache: FakeCache) -> None:
    ready(cache)

    health = monitor.version_health(version())

    assert health["status"] == "idle"
    assert health["reasons"] == ["no requests over the last 60s"]
    assert health["state"] == "READY"


def test_requests_older_than_the_window_do_not_count(monitor: HealthMonitor, cache: FakeCache,
                                                     usage: UsageRecorder, clock: Clock) -> None:
    ready(cache)
    record(usage, 20, "runtime_error")
    clock.now += WINDOW + 1

    assert monitor.version_health(version())["status"] == "idle"


def test_served_requests_within_thresholds_are_healthy(monitor: HealthMonitor, cache: FakeCache,
                                                       usage: UsageRecorder) -> None:
    ready(cache)
    record(usage, 97)
    record(usage, 3, "runtime_error")  # 3% < 5%
    record(usage, 50, "bad_input")  # the callers' fault, not the model's

    health = monitor.version_health(version())

    assert health["status"] == "healthy"
    assert health["reasons"] == []
    assert health["requests"] == 150
    assert health["error_rate"] == 0.03  # of the 100 requests that say something of the model
    assert health["p99_ms"] == 10.0
    assert health["window_seconds"] == WINDOW


def test_a_version_with_requests_is_judged_even_if_not_loaded_now(monitor: HealthMonitor,
                                                                  usage: UsageRecorder) -> None:
    record(usage, 10)

    assert monitor.version_health(version())["status"] == "healthy"


def test_an_error_rate_over_the_threshold_is_degraded(monitor: HealthMonitor, cache: FakeCache,
                                                      usage: UsageRecorder) -> None:
    ready(cache)
    record(usage, 90)
    record(usage, 10, "runtime_error", detail="ZeroDivisionError in layer 3")

    health = monitor.version_health(version())

    assert health["status"] == "degraded"
    assert health["reasons"] == ["errors in 10% of 100 requests over the last 60s (threshold 5%); "
                                 "last: ZeroDivisionError in layer 3"]
    assert health["error_rate"] == 0.1


def test_an_invalid_output_rate_over_the_threshold_is_degraded(monitor: HealthMonitor, cache: FakeCache,
                                                               usage: UsageRecorder) -> None:
    ready(cache)
    record(usage, 97)
    record(usage, 3, "invalid_output", detail="output 'probabilities' holds 1 NaN")

    health = monitor.version_health(version())

    assert health["status"] == "degraded"
    assert health["reasons"] == ["invalid outputs in 3% of 100 requests over the last 60s (threshold 1%); "
                                 "last: output 'probabilities' holds 1 NaN"]
    assert health["invalid_output_rate"] == 0.03


def test_a_slow_p99_is_degraded(monitor: HealthMonitor, cache: FakeCache, usage: UsageRecorder) -> None:
    ready(cache)
    record(usage, 98)
    record(usage, 2, seconds=2.5)

    health = monitor.version_health(version())

    assert health["status"] == "degraded"
    assert health["reasons"] == ["p99 latency 2500.0 ms over the last 60s (threshold 1000 ms)"]
    assert health["p99_ms"] == 2500.0


def test_a_failed_load_is_unhealthy_with_its_reason(monitor: HealthMonitor, cache: FakeCache) -> None:
    cache.states["iris", 1] = VersionState(State.FAILED, reason="not a loadable ONNX model: bad magic")

    health = monitor.version_health(version())

    assert health["status"] == "unhealthy"
    assert health["reasons"] == ["failed to load: not a loadable ONNX model: bad magic"]
    assert health["state"] == "FAILED"


def test_half_the_requests_failing_is_unhealthy(monitor: HealthMonitor, cache: FakeCache,
                                                usage: UsageRecorder) -> None:
    ready(cache)
    record(usage, 4)
    record(usage, 5, "timeout", detail="prediction took over 30s")
    record(usage, 1, "ok", seconds=3.0)  # also slow: both reasons are given

    health = monitor.version_health(version())

    assert health["status"] == "unhealthy"
    assert health["reasons"] == [
        "errors in 50% of 10 requests over the last 60s (threshold 5%); last: prediction took over 30s",
        "p99 latency 3000.0 ms over the last 60s (threshold 1000 ms)"]


def test_just_under_half_failing_is_still_only_degraded(monitor: HealthMonitor, cache: FakeCache,
                                                         usage: UsageRecorder) -> None:
    ready(cache)
    record(usage, 6)
    record(usage, 5, "runtime_error")

    health = monitor.version_health(version())

    assert health["status"] == "degraded"
    assert health["reasons"][0].startswith("errors in 45% of 11 requests")


def test_versions_are_judged_separately(monitor: HealthMonitor, cache: FakeCache,
                                        usage: UsageRecorder) -> None:
    ready(cache, 1)
    ready(cache, 2)
    record(usage, 10, "runtime_error", number=1)
    record(usage, 10, number=2)

    assert monitor.version_health(version(1))["status"] == "unhealthy"
    assert monitor.version_health(version(2))["status"] == "healthy"


# ---- thresholds --------------------------------------------------------------------------------


def test_a_version_may_allow_a_slower_p99(monitor: HealthMonitor, cache: FakeCache,
                                          usage: UsageRecorder) -> None:
    ready(cache)
    record(usage, 98)
    record(usage, 2, seconds=2.5)

    assert monitor.version_health(version(metadata={"health": {"max_p99_ms": 3000}}))["status"] == "healthy"


def test_a_version_may_demand_a_faster_p99(monitor: HealthMonitor, cache: FakeCache,
                                           usage: UsageRecorder) -> None:
    ready(cache)
    record(usage, 100, seconds=50 * MS)

    health = monitor.version_health(version(metadata={"health": {"max_p99_ms": 20}}))

    assert health["status"] == "degraded"
    assert health["reasons"] == ["p99 latency 50.0 ms over the last 60s (threshold 20 ms)"]


def test_thresholds_per_version_override_only_what_they_name() -> None:
    defaults = Thresholds(max_error_rate=0.1, max_invalid_rate=0.02, max_p99=2.0)

    assert defaults.for_version({}) == defaults
    assert defaults.for_version({"health": {"max_p99_ms": 250}}) == Thresholds(0.1, 0.02, 0.25)
    assert defaults.for_version({"health": {"max_error_rate": 0.2, "max_invalid_rate": 0}}) == Thresholds(
        0.2, 0.0, 2.0)


def test_server_thresholds_apply_to_every_version(cache: FakeCache, usage: UsageRecorder,
                                                  events: EventLog, clock: Clock) -> None:
    lenient = HealthMonitor(cache, usage, events, Thresholds(max_error_rate=0.2), WINDOW,  # type: ignore[arg-type]
                            clock)
    ready(cache)
    record(usage, 90)
    record(usage, 10, "runtime_error")

    assert lenient.version_health(version())["status"] == "healthy"


# ---- golden probes -----------------------------------------------------------------------------


def loaded(record: VersionRecord, label: int) -> LoadedModel:
    return LoadedModel(record, LabelRuntime(label), size=100, loaded_at=0.0, last_used=0.0)


def probe_events(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line["event"] == "probe_failed"]


@pytest.mark.anyio
async def test_a_failing_probe_makes_the_version_unhealthy(monitor: HealthMonitor, cache: FakeCache,
                                                           usage: UsageRecorder, clock: Clock,
                                                           stream: io.StringIO) -> None:
    ready(cache)
    record(usage, 10)
    record_ = version(metadata={"probe": PROBE})

    result = await monitor.probe(loaded(record_, label=2))

    assert result is not None and not result.passed
    assert monitor.last_probe(("iris", 1)) == result
    health = monitor.version_health(record_)
    assert health["status"] == "unhealthy"
    assert health["reasons"] == ["golden probe failed: output 'label' differs from the expected by up "
                                 "to 2 (tolerance 1e-06)"]
    assert health["last_probe"] == {"passed": False, "at": clock.now, "detail": result.detail}
    events = probe_events(stream)
    assert [(e["model"], e["version"], e["detail"]) for e in events] == [("iris", 1, result.detail)]


@pytest.mark.anyio
async def test_a_passing_probe_keeps_the_version_healthy(monitor: HealthMonitor, cache: FakeCache,
                                                         usage: UsageRecorder, stream: io.StringIO) -> None:
    ready(cache)
    record(usage, 10)
    record_ = version(metadata={"probe": PROBE})

    result = await monitor.probe(loaded(record_, label=0))

    assert result is not None and result.passed
    health = monitor.version_health(record_)
    assert health["status"] == "healthy"
    assert health["last_probe"]["passed"] is True
    assert probe_events(stream) == []


@pytest.mark.anyio
async def test_a_fixed_model_recovers_when_its_probe_passes_again(monitor: HealthMonitor,
                                                                  cache: FakeCache) -> None:
    ready(cache)
    record_ = version(metadata={"probe": PROBE})

    await monitor.probe(loaded(record_, label=1))
    assert monitor.version_health(record_)["status"] == "unhealthy"
    await monitor.probe(loaded(record_, label=0))
    assert monitor.version_health(record_)["status"] == "idle"


@pytest.mark.anyio
async def test_a_forgotten_probe_no_longer_counts(monitor: HealthMonitor, cache: FakeCache) -> None:
    ready(cache)
    record_ = version(metadata={"probe": PROBE})
    await monitor.probe(loaded(record_, label=1))

    monitor.forget(("iris", 1))

    assert monitor.last_probe(("iris", 1)) is None
    assert monitor.version_health(record_)["status"] == "idle"


@pytest.mark.anyio
async def test_a_version_without_a_probe_is_not_probed(monitor: HealthMonitor) -> None:
    assert await monitor.probe(loaded(version(), label=1)) is None
    assert monitor.last_probe(("iris", 1)) is None
