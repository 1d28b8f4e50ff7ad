"""Per-model monitoring settings: the rollback guard's thresholds, partial updates, and the
in-memory copy kept over a real SQLite registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model_manager.errors import InvalidInput, NotFound
from model_manager.registry import Registry
from model_manager.runtimes.signature import Signature, TensorSpec
from model_manager.serving.model_settings import ModelSettings, RollbackGuard, SettingsCache
from model_manager.telemetry import WindowStats

SIGNATURE = Signature((TensorSpec("input", "FP32", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),))


def stats(requests: int, errors: int = 0, p99: float | None = None) -> WindowStats:
    return WindowStats(requests=requests, errors=errors, invalid=0, p99=p99)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry.from_url(f"sqlite:///{tmp_path}/r.db")
    registry.migrate()
    for name in ("iris", "house"):
        registry.create_version(name, sha256="0" * 64, size=1, format="onnx", signature=SIGNATURE,
                                metadata={})
    yield registry
    registry.close()


@pytest.fixture
def cache(registry: Registry) -> SettingsCache:
    return SettingsCache(registry, default_log_rate=0.1)


def test_guard_waits_for_min_requests() -> None:
    guard = RollbackGuard(max_error_rate=0.05, max_p99_ms=100, min_requests=200)

    assert guard.breach(stats(199, errors=199, p99=10.0)) is None


def test_guard_breached_by_error_rate() -> None:
    guard = RollbackGuard(max_error_rate=0.05, min_requests=100)

    assert guard.breach(stats(100, errors=5)) is None  # at the threshold is within it
    reason = guard.breach(stats(100, errors=6))
    assert reason is not None
    assert "error rate 0.060 over 100 requests" in reason
    assert "0.05" in reason


def test_guard_breached_by_p99_in_milliseconds() -> None:
    guard = RollbackGuard(max_p99_ms=250, min_requests=10)

    assert guard.breach(stats(10, p99=0.25)) is None
    assert guard.breach(stats(10, p99=None)) is None
    reason = guard.breach(stats(10, p99=0.3))
    assert reason is not None
    assert "p99 300.0 ms over 10 requests" in reason
    assert "250 ms" in reason


def test_guard_on_errors_alone_ignores_latency() -> None:
    guard = RollbackGuard(max_error_rate=0.5, min_requests=1)

    assert guard.breach(stats(10, errors=0, p99=60.0)) is None


def test_guard_from_json_keeps_what_was_given_and_defaults_min_requests() -> None:
    assert RollbackGuard.from_json({"max_error_rate": 0.05}) == RollbackGuard(0.05, None, 200)
    assert RollbackGuard.from_json({"max_p99_ms": 250, "min_requests": 50}) == RollbackGuard(
        None, 250.0, 50)


def test_guard_from_json_keeps_min_requests_zero() -> None:
    assert RollbackGuard.from_json({"max_error_rate": 0.05, "min_requests": 0}).min_requests == 0


@pytest.mark.parametrize(("data", "message"), [
    (None, "auto_rollback is"),
    ([0.05], "auto_rollback is"),
    ({"max_error_rate": 0.05, "window": 60}, "auto_rollback is"),
    ({}, "needs max_error_rate or max_p99_ms"),
    ({"min_requests": 10}, "needs max_error_rate or max_p99_ms"),
    ({"max_error_rate": -0.1}, "max_error_rate is a non-negative number"),
    ({"max_error_rate": "5%"}, "max_error_rate is a non-negative number"),
    ({"max_p99_ms": True}, "max_p99_ms is a non-negative number"),
    ({"max_p99_ms": 100, "min_requests": -1}, "min_requests is a non-negative integer"),
])
def test_guard_from_json_rejects_bad_thresholds(data: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        RollbackGuard.from_json(data)


def test_updated_changes_only_what_was_given() -> None:
    guard = RollbackGuard(max_error_rate=0.1)
    settings = ModelSettings(0.1, guard)

    assert settings.updated({"prediction_log_rate": 0.5}) == ModelSettings(0.5, guard)
    assert settings.updated({"auto_rollback": {"max_p99_ms": 80}}) == ModelSettings(
        0.1, RollbackGuard(max_p99_ms=80))
    assert settings.updated({}) == settings
    assert settings == ModelSettings(0.1, guard)  # frozen: updates are new values


def test_updated_with_null_auto_rollback_removes_the_guard() -> None:
    settings = ModelSettings(0.1, RollbackGuard(max_error_rate=0.1))

    assert settings.updated({"auto_rollback": None}).auto_rollback is None


@pytest.mark.parametrize("rate", [0, 1, 0.25])
def test_updated_accepts_rates_from_zero_to_one(rate: float) -> None:
    assert ModelSettings(0.1).updated({"prediction_log_rate": rate}).prediction_log_rate == rate


@pytest.mark.parametrize(("changes", "message"), [
    ({"prediction_log_rate": 1.5}, "between 0 and 1"),
    ({"prediction_log_rate": None}, "between 0 and 1"),
    ({"prediction_log_rate": -0.5}, "non-negative number"),
    ({"prediction_log_rate": "all"}, "non-negative number"),
    ({"log_rate": 0.5}, r"unknown settings \['log_rate'\]"),
    ({"auto_rollback": {}}, "needs max_error_rate or max_p99_ms"),
])
def test_updated_rejects_bad_changes(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        ModelSettings(0.1).updated(changes)


def test_to_json_reads_back_through_updated() -> None:
    settings = ModelSettings(0.3, RollbackGuard(max_error_rate=0.02, max_p99_ms=150, min_requests=20))

    assert ModelSettings(0.0).updated(settings.to_json()) == settings
    assert ModelSettings(0.3).to_json() == {"prediction_log_rate": 0.3, "auto_rollback": None,
                                            "batching": None, "owner": None, "notify": [],
                                            "drift_psi": 0.2, "drift_ks": None}
    told = ModelSettings(0.0).updated({"owner": "team", "notify": [
        {"url": "https://hooks.example/x", "events": ["crashed"], "secret": "k"}]})
    assert ModelSettings(0.0).updated(told.to_json(reveal=True)) == told
    assert told.to_json()["notify"] == [{"url": "https://hooks.example/x", "events": ["crashed"],
                                         "secret": True}]


def test_models_without_stored_settings_get_the_defaults(cache: SettingsCache) -> None:
    cache.refresh()

    assert cache.get("iris") == ModelSettings(0.1)
    assert cache.get("not-registered") == ModelSettings(0.1)
    assert cache.guarded() == {}


def test_update_is_used_now_and_stored(cache: SettingsCache, registry: Registry) -> None:
    settings = cache.update("iris", {"prediction_log_rate": 0.5}, actor="alice")

    assert settings == ModelSettings(0.5)
    assert cache.get("iris") == settings
    assert cache.get("house") == ModelSettings(0.1)
    assert registry.get_settings("iris") == settings.to_json()
    event = registry.list_events("iris", limit=1)[0]
    assert (event.kind, event.actor) == ("settings.set", "alice")


def test_partial_updates_build_on_the_stored_settings(cache: SettingsCache, registry: Registry) -> None:
    cache.update("iris", {"prediction_log_rate": 0.5})
    other_replica = SettingsCache(registry, default_log_rate=0.1)

    settings = other_replica.update("iris", {"auto_rollback": {"max_error_rate": 0.05}})

    assert settings == ModelSettings(0.5, RollbackGuard(max_error_rate=0.05))


def test_refresh_picks_up_another_replicas_changes(cache: SettingsCache, registry: Registry) -> None:
    cache.refresh()
    SettingsCache(registry, default_log_rate=0.1).update(
        "house", {"auto_rollback": {"max_p99_ms": 200}})
    assert cache.get("house") == ModelSettings(0.1)

    cache.refresh()

    assert cache.get("house") == ModelSettings(0.1, RollbackGuard(max_p99_ms=200))


def test_guarded_lists_only_models_with_a_guard(cache: SettingsCache) -> None:
    cache.update("iris", {"auto_rollback": {"max_error_rate": 0.05}})
    cache.update("house", {"prediction_log_rate": 0.2})

    assert cache.guarded() == {"iris": RollbackGuard(max_error_rate=0.05)}

    cache.update("iris", {"auto_rollback": None})

    assert cache.guarded() == {}


def test_update_of_an_unknown_model_is_not_found(cache: SettingsCache) -> None:
    with pytest.raises(NotFound):
        cache.update("nope", {"prediction_log_rate": 0.5})
    assert cache.get("nope") == ModelSettings(0.1)


def test_a_rejected_update_changes_nothing(cache: SettingsCache, registry: Registry) -> None:
    cache.update("iris", {"prediction_log_rate": 0.5})

    with pytest.raises(InvalidInput):
        cache.update("iris", {"prediction_log_rate": 2})

    assert cache.get("iris") == ModelSettings(0.5)
    assert registry.get_settings("iris")["prediction_log_rate"] == 0.5
