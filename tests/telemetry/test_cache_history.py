"""CacheHistory: the cache's loads, failures and unloads with their times, the latest kept, and
exact counts per minute of the last hour."""

from __future__ import annotations

from model_manager.serving.hooks import UnloadReason
from model_manager.telemetry import CacheHistory

AT = 1_800_000_000.0


def test_events_are_named_and_timed_in_order() -> None:
    history = CacheHistory(lambda: AT)
    history.on_load(("iris", 1), 2048, 0.12345)
    history.on_load_failure(("iris", 2), "not an ONNX file")
    history.on_unload(("iris", 1), UnloadReason.EVICTED)
    history.on_unload(("iris", 2), UnloadReason.IDLE)
    assert history.events() == [
        {"at": "2027-01-15T08:00:00.000+00:00", "event": "load", "model": "iris", "version": 1,
         "bytes": 2048, "seconds": 0.1235},
        {"at": "2027-01-15T08:00:00.000+00:00", "event": "load_failed", "model": "iris",
         "version": 2, "reason": "not an ONNX file"},
        {"at": "2027-01-15T08:00:00.000+00:00", "event": "evict", "model": "iris", "version": 1,
         "reason": "evicted"},
        {"at": "2027-01-15T08:00:00.000+00:00", "event": "unload", "model": "iris", "version": 2,
         "reason": "idle"},
    ]


def test_only_the_latest_events_are_kept() -> None:
    history = CacheHistory(lambda: AT, kept=3)
    for version in range(1, 6):
        history.on_load(("iris", version), 1, 0.0)
    assert [e["version"] for e in history.events()] == [3, 4, 5]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_each_minute_counts_every_event_even_those_the_list_dropped() -> None:
    clock = Clock(AT + 10)
    history = CacheHistory(clock, kept=3)
    for version in range(1, 11):  # thrashing: ten loads and nine evictions in one minute
        history.on_load(("iris", version), 1, 0.0)
        if version > 1:
            history.on_unload(("iris", version - 1), UnloadReason.EVICTED)
    history.on_load_failure(("iris", 11), "broken")
    clock.now = AT + 70
    history.on_unload(("iris", 10), UnloadReason.IDLE)

    assert len(history.events()) == 3
    assert history.per_minute(clock.now) == [
        {"start": "2027-01-15T08:00:00+00:00", "load": 10, "evict": 9, "unload": 0, "load_failed": 1},
        {"start": "2027-01-15T08:01:00+00:00", "load": 0, "evict": 0, "unload": 1, "load_failed": 0},
    ]


def test_only_the_last_hour_is_counted_and_kept() -> None:
    clock = Clock(AT)
    history = CacheHistory(clock)
    for minute in range(90):
        clock.now = AT + minute * 60
        history.on_load(("iris", 1), 1, 0.0)
    starts = [m["start"] for m in history.per_minute(clock.now)]
    assert len(starts) == 60
    assert (starts[0], starts[-1]) == ("2027-01-15T08:30:00+00:00", "2027-01-15T09:29:00+00:00")
    assert len(history.per_minute(AT + 59 * 60)) == 30  # minutes 0-29 are gone, not just left out
    assert history.per_minute(AT + 200 * 60) == []  # an hour with no events

    clock.now = AT  # set back: the minutes ahead of it go with the next event
    history.on_load(("iris", 1), 1, 0.0)
    assert [m["load"] for m in history.per_minute(AT + 89 * 60)] == []
    assert [m["load"] for m in history.per_minute(AT)] == [1]
