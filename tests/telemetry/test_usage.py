"""UsageRecorder over a real SQLite registry: outcomes, flushes, the recent window, error bursts."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from model_manager import errors
from model_manager.registry import Registry
from model_manager.runtimes.signature import Signature, TensorSpec
from model_manager.serving.model_settings import RollbackGuard
from model_manager.telemetry import EventLog, Metrics, UsageCounts, UsageRecorder, UsageStore, usage_report
from model_manager.telemetry.usage_store import UsageKey

SIGNATURE = Signature((TensorSpec("input", "FP32", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),))
KEY = ("iris", 1)
MS = 0.001


class Clock:
    def __init__(self) -> None:
        self.now = time.time()  # usage() reads the last days by the real date

    def __call__(self) -> float:
        return self.now


class Events:
    """What an EventLog wrote to its stream, one JSON object a line."""

    def __init__(self, log: EventLog, stream: io.StringIO) -> None:
        self.log, self.stream = log, stream

    def named(self, event: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        return [line for line in lines if line["event"] == event]


class FlakyStore(UsageStore):
    """The real store, whose next ``failures`` writes fail as a database outage would."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry)
        self.failures = 0
        self.lost_answers = 0
        """Writes that commit but whose caller hears of a failure (a connection lost at commit)."""

    def add(self, deltas: dict[UsageKey, UsageCounts], batch: str | None = None) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("database is unreachable")
        super().add(deltas, batch)
        if self.lost_answers:
            self.lost_answers -= 1
            raise errors.Unreachable("the registry is unreachable: the connection was lost")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry.from_url(f"sqlite:///{tmp_path}/r.db")
    registry.migrate()
    for _ in range(2):
        registry.create_version("iris", sha256="a" * 64, size=10, format="onnx", signature=SIGNATURE,
                                metadata={})
    yield registry
    registry.close()


@pytest.fixture
def events() -> Iterator[Events]:
    """An EventLog writing to a StringIO."""
    stream = io.StringIO()
    yield Events(EventLog(stream=stream), stream)


@pytest.fixture
def store(registry: Registry) -> FlakyStore:
    return FlakyStore(registry)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recorder(store: FlakyStore, metrics: Metrics, events: Events, clock: Clock) -> UsageRecorder:
    return UsageRecorder(store, metrics, events.log, clock)


def today(clock: Clock) -> date:
    return datetime.fromtimestamp(clock.now, UTC).date()


def requests_metric(metrics: Metrics, outcome: str, version: int = 1) -> float:
    value = metrics.registry.get_sample_value(
        "model_manager_requests_total", {"model": "iris", "version": str(version), "outcome": outcome})
    return value or 0.0


# ---- track -------------------------------------------------------------------------------------


def test_track_counts_a_successful_prediction(recorder: UsageRecorder, metrics: Metrics,
                                              clock: Clock) -> None:
    with recorder.track(KEY) as tracking:
        tracking.inference = 2 * MS

    counts = recorder.usage("iris")[1][today(clock)]
    assert (counts.requests, counts.outcomes) == (1, {"ok": 1})
    assert sum(counts.inference) == 1
    assert counts.first_used == counts.last_used == clock.now
    assert requests_metric(metrics, "ok") == 1


@pytest.mark.parametrize(("exc", "outcome"), [
    (errors.InvalidInput("bad tensor"), "bad_input"),
    (errors.SignatureMismatch("wrong shape"), "bad_input"),
    (errors.PredictionTimeout("too slow"), "timeout"),
    (errors.InvalidOutput("NaN in output"), "invalid_output"),
    (errors.Overloaded("no room"), "overloaded"),
    (errors.ModelError("the model raised"), "runtime_error"),
    (RuntimeError("unexpected"), "runtime_error"),
])
def test_track_counts_an_exception_as_its_outcome_and_reraises_it(
        recorder: UsageRecorder, metrics: Metrics, clock: Clock, exc: Exception, outcome: str) -> None:
    with pytest.raises(type(exc)), recorder.track(KEY):
        raise exc

    counts = recorder.usage("iris")[1][today(clock)]
    assert (counts.requests, counts.outcomes) == (1, {outcome: 1})
    assert requests_metric(metrics, outcome) == 1
    assert requests_metric(metrics, "ok") == 0


def test_last_error_keeps_the_latest_server_side_error_message(recorder: UsageRecorder) -> None:
    with pytest.raises(errors.ModelError), recorder.track(KEY):
        raise errors.ModelError("division by zero in layer 3")
    with pytest.raises(errors.InvalidInput), recorder.track(KEY):
        raise errors.InvalidInput("the caller's fault")

    assert recorder.last_error(KEY) == "division by zero in layer 3"
    assert recorder.last_error(KEY, "runtime_error") == "division by zero in layer 3"
    assert recorder.last_error(KEY, "timeout") is None
    assert recorder.last_error(("iris", 2)) is None


# ---- flush and usage ---------------------------------------------------------------------------


def record(recorder: UsageRecorder, n: int, outcome: str = "ok", seconds: float = 10 * MS,
           key: tuple[str, int] = KEY) -> None:
    for _ in range(n):
        recorder.record(key, outcome, seconds, None)


def test_pending_counts_show_in_usage_before_any_flush(recorder: UsageRecorder, store: UsageStore,
                                                       clock: Clock) -> None:
    record(recorder, 3)
    record(recorder, 2, key=("iris", 2))

    usage = recorder.usage("iris")

    assert usage[1][today(clock)].requests == 3
    assert usage[2][today(clock)].requests == 2
    assert store.read("iris", today(clock)) == {}
    assert recorder.usage("other") == {}


def test_flush_writes_the_counts_and_usage_does_not_count_them_twice(
        recorder: UsageRecorder, store: UsageStore, clock: Clock) -> None:
    record(recorder, 4)
    record(recorder, 1, "timeout")
    before = recorder.usage("iris")[1][today(clock)]

    recorder.flush()

    stored = store.read("iris", today(clock))
    assert list(stored) == [(1, today(clock))]
    assert stored[1, today(clock)].requests == 5
    after = recorder.usage("iris")[1][today(clock)]
    assert after.requests == 5
    assert after.outcomes == before.outcomes == {"ok": 4, "timeout": 1}
    assert after.latency == before.latency


def test_requests_recorded_while_other_threads_read_and_flush_are_each_counted_once(
        recorder: UsageRecorder, store: UsageStore, clock: Clock) -> None:
    """Successful requests reach the counts when they are next read or flushed: readers and
    flushes racing with the recording threads neither lose one nor count one twice."""
    writers, each = 4, 3000
    done = threading.Event()

    def read_and_flush() -> None:
        while not done.is_set():
            recorder.window(KEY, 60)
            recorder.recent_totals()
            recorder.flush()

    reader = threading.Thread(target=read_and_flush)
    reader.start()
    recorders = [threading.Thread(target=record, args=(recorder, each)) for _ in range(writers)]
    for thread in recorders:
        thread.start()
    for thread in recorders:
        thread.join()
    done.set()
    reader.join()

    assert recorder.window(KEY, 60).requests == writers * each
    assert recorder.usage("iris")[1][today(clock)].requests == writers * each
    recorder.flush()
    assert store.read("iris", today(clock))[1, today(clock)].requests == writers * each
    assert recorder.recent_totals()[1][KEY].hour.requests == writers * each


def test_requests_either_side_of_midnight_count_on_their_own_days(recorder: UsageRecorder,
                                                                   clock: Clock) -> None:
    midnight = clock.now - clock.now % 86400
    clock.now = midnight - 1
    record(recorder, 3)
    clock.now = midnight + 1
    record(recorder, 2)
    record(recorder, 1, "timeout")

    usage = recorder.usage("iris")[1]

    before, after = (datetime.fromtimestamp(t, UTC).date() for t in (midnight - 1, midnight + 1))
    assert usage[before].requests == 3
    assert usage[after].requests == 3 and usage[after].outcomes == {"ok": 2, "timeout": 1}
    assert recorder.window(KEY, 60).requests == 6


def test_requests_on_three_days_before_any_read_count_on_each(recorder: UsageRecorder,
                                                               clock: Clock) -> None:
    """A clock moved forward twice (``--clock-file``) before anything reads the counts."""
    start = clock.now
    for shift, n in ((0, 1), (86400, 2), (2 * 86400, 3)):
        clock.now = start + shift
        record(recorder, n)

    usage = recorder.usage("iris", days=5)[1]

    assert [usage[datetime.fromtimestamp(start + shift, UTC).date()].requests
            for shift in (0, 86400, 2 * 86400)] == [1, 2, 3]


def test_two_flushes_add_up_in_the_same_day_row(recorder: UsageRecorder, store: UsageStore,
                                                clock: Clock) -> None:
    first_at = clock.now
    record(recorder, 3)
    recorder.flush()
    clock.now += 5
    record(recorder, 2, "runtime_error")
    recorder.flush()
    recorder.flush()  # nothing pending: a no-op

    stored = store.read("iris", today(clock))
    assert list(stored) == [(1, today(clock))]
    row = stored[1, today(clock)]
    assert row.requests == 5
    assert row.outcomes == {"ok": 3, "runtime_error": 2}
    assert sum(row.latency) == 5
    assert row.first_used == pytest.approx(first_at, abs=1e-3)
    assert row.last_used == pytest.approx(clock.now, abs=1e-3)
    assert recorder.usage("iris")[1][today(clock)].requests == 5


def test_a_failed_flush_keeps_the_counts_for_the_next_one(recorder: UsageRecorder, store: FlakyStore,
                                                          clock: Clock) -> None:
    record(recorder, 3)
    store.failures = 1

    with pytest.raises(OSError, match="unreachable"):
        recorder.flush()

    assert store.read("iris", today(clock)) == {}
    assert recorder.usage("iris")[1][today(clock)].requests == 3
    record(recorder, 1)
    recorder.flush()
    assert store.read("iris", today(clock))[1, today(clock)].requests == 4
    assert recorder.usage("iris")[1][today(clock)].requests == 4


def test_a_flush_whose_commit_was_not_acknowledged_is_written_once(
        recorder: UsageRecorder, store: FlakyStore, clock: Clock) -> None:
    record(recorder, 3)
    store.lost_answers = 1

    with pytest.raises(errors.Unreachable):
        recorder.flush()
    assert recorder.pending_count() == 1  # kept: the recorder cannot know the write went through
    record(recorder, 2)
    recorder.flush()

    assert store.read("iris", today(clock))[1, today(clock)].requests == 5
    assert recorder.usage("iris")[1][today(clock)].requests == 5
    assert recorder.pending_count() == 0


def test_usage_report_lists_a_never_used_version(recorder: UsageRecorder, clock: Clock) -> None:
    record(recorder, 2)
    record(recorder, 1, "bad_input")
    recorder.flush()

    report = usage_report("iris", [1, 2], recorder.usage("iris"))

    assert report["model"] == "iris"
    assert report["error_kinds"] == ["bad_input", "runtime_error", "timeout", "invalid_output",
                                     "overloaded", "unavailable"]
    used, unused = report["versions"]
    assert (used["version"], used["requests"], used["errors"]) == (1, 3, 1)
    assert used["errors_by_kind"]["bad_input"] == 1
    assert used["first_used"] == datetime.fromtimestamp(clock.now, UTC).isoformat(timespec="seconds")
    assert [d["day"] for d in used["days"]] == [today(clock).isoformat()]
    assert used["days"][0]["requests"] == 3
    assert unused["version"] == 2
    assert unused["requests"] == 0
    assert unused["first_used"] is None and unused["last_used"] is None
    assert unused["p99_ms"] is None
    assert unused["days"] == []


# ---- the recent window -------------------------------------------------------------------------


def test_window_counts_only_recent_requests(recorder: UsageRecorder, clock: Clock) -> None:
    record(recorder, 5, "runtime_error")
    clock.now += 120
    record(recorder, 4)

    recent = recorder.window(KEY, 60)
    assert (recent.requests, recent.errors) == (4, 0)
    assert recent.error_rate == 0.0
    assert recorder.window(KEY, 300).requests == 9
    assert recorder.window(("iris", 2), 60).requests == 0


def test_window_error_rate_leaves_out_the_callers_mistakes(recorder: UsageRecorder) -> None:
    record(recorder, 6)
    record(recorder, 2, "bad_input")
    record(recorder, 1, "timeout")
    record(recorder, 1, "invalid_output")

    record(recorder, 2, "unavailable")

    stats = recorder.window(KEY, 60)

    assert stats.requests == 12
    assert stats.errors == 2
    assert stats.judged_requests == 8  # neither mistakes nor an unreachable store dilute the rate
    assert stats.error_rate == pytest.approx(0.25)
    assert stats.invalid == 1
    assert stats.invalid_rate == pytest.approx(0.125)


def test_a_flood_of_bad_input_neither_fills_the_guards_minimum_nor_hides_a_failing_canary(
        recorder: UsageRecorder) -> None:
    guard = RollbackGuard(max_error_rate=0.1, min_requests=20)
    record(recorder, 500, "bad_input")
    record(recorder, 10, "runtime_error")

    assert guard.breach(recorder.window(KEY, 60)) is None  # 10 judged requests: too few yet
    record(recorder, 10)
    assert "error rate 0.500 over 20 requests" in (guard.breach(recorder.window(KEY, 60)) or "")


def test_window_p99_sees_the_slowest_requests(recorder: UsageRecorder) -> None:
    assert recorder.window(KEY, 60).p99 is None

    record(recorder, 98, seconds=10 * MS)
    record(recorder, 2, seconds=2.0)

    assert recorder.window(KEY, 60).p99 == 2.0


def test_window_p99_ignores_one_outlier_in_many(recorder: UsageRecorder) -> None:
    record(recorder, 300, seconds=10 * MS)
    record(recorder, 1, seconds=5.0)

    assert recorder.window(KEY, 60).p99 == 10 * MS


# ---- error bursts ------------------------------------------------------------------------------


def test_an_error_burst_emits_one_event_per_minute(recorder: UsageRecorder, events: Events,
                                                   clock: Clock) -> None:
    start = clock.now
    for i in range(9):
        clock.now = start + i
        record(recorder, 1, "runtime_error")
    assert events.named("error_burst") == []

    clock.now = start + 9
    record(recorder, 1, "runtime_error")
    bursts = events.named("error_burst")
    assert len(bursts) == 1
    assert bursts[0]["model"] == "iris" and bursts[0]["version"] == 1
    assert bursts[0]["errors"] == bursts[0]["requests"] == 10
    assert bursts[0]["seconds"] == 60

    for i in range(20):  # the burst goes on within the same minute
        clock.now = start + 10 + i
        record(recorder, 1, "timeout")
    assert len(events.named("error_burst")) == 1

    clock.now = start + 9 + 60
    record(recorder, 1, "runtime_error")
    assert len(events.named("error_burst")) == 2


def test_caller_errors_and_slow_successes_are_no_burst(recorder: UsageRecorder, events: Events) -> None:
    record(recorder, 30, "bad_input")
    record(recorder, 30, "ok", seconds=5.0)

    assert events.named("error_burst") == []


def test_bursts_are_per_version(recorder: UsageRecorder, events: Events) -> None:
    record(recorder, 9, "runtime_error", key=("iris", 1))
    record(recorder, 9, "runtime_error", key=("iris", 2))
    assert events.named("error_burst") == []

    record(recorder, 1, "runtime_error", key=("iris", 2))
    assert [e["version"] for e in events.named("error_burst")] == [2]


# ---- recent --------------------------------------------------------------------------------------


def test_recent_buckets_each_minute_of_each_version(recorder: UsageRecorder, clock: Clock) -> None:
    start = clock.now
    recorder.record(KEY, "ok", 2 * MS, MS)
    clock.now = start + 60
    recorder.record(KEY, "runtime_error", 2 * MS, None, "boom")
    recorder.record(("iris", 2), "ok", 2 * MS, MS)
    recorder.record(("other", 1), "ok", 2 * MS, MS)

    now, by_key = recorder.recent("hour", "iris")
    assert now == clock.now
    assert sorted(by_key) == [("iris", 1), ("iris", 2)]
    assert [(c.requests, c.errors) for _, c in by_key[KEY]] == [(1, 0), (1, 1)]
    _, everything = recorder.recent("day")
    assert sorted(everything) == [("iris", 1), ("iris", 2), ("other", 1)]


def test_recent_totals_take_the_hour_and_the_day_at_one_time(recorder: UsageRecorder,
                                                             clock: Clock) -> None:
    start = clock.now
    recorder.record(KEY, "ok", 2 * MS, MS)
    clock.now = start + 2 * 3600
    recorder.record(KEY, "timeout", 2 * MS, None, "slow")
    recorder.record(("other", 1), "ok", 2 * MS, MS)

    now, totals = recorder.recent_totals()
    assert now == clock.now
    assert sorted(totals) == [KEY, ("other", 1)]
    assert (totals[KEY].hour.requests, totals[KEY].hour.errors, totals[KEY].day.requests) == (1, 1, 2)
    assert (totals[("other", 1)].hour.requests, totals[("other", 1)].day.requests) == (1, 1)


def test_flush_forgets_the_recent_buckets_of_a_version_idle_for_a_day(
        recorder: UsageRecorder, clock: Clock) -> None:
    start = clock.now
    recorder.record(KEY, "ok", 2 * MS, MS)
    clock.now = start + 25 * 3600 + 60  # no dashboard reads in between
    recorder.flush()

    clock.now = start  # back to when it was used: had its buckets been kept, they would show
    assert recorder.recent("hour") == (start, {})
    assert recorder.recent_totals() == (start, {})


def test_without_a_flush_reading_forgets_nothing(recorder: UsageRecorder, clock: Clock) -> None:
    start = clock.now
    recorder.record(KEY, "ok", 2 * MS, MS)
    clock.now = start + 25 * 3600 + 60
    assert recorder.recent("day") == (clock.now, {})  # idle: left out

    clock.now = start
    _, by_key = recorder.recent("hour")
    assert [c.requests for _, c in by_key[KEY]] == [1]
