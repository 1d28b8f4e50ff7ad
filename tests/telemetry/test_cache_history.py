"""CacheHistory: the cache's loads, failures and unloads with their times, the latest kept."""

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
