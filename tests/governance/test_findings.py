"""Findings of one version from hand-built facts: each code, its evidence, and its limits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from model_manager.errors import InvalidInput
from model_manager.governance.findings import (
    CODES,
    DAY,
    Finding,
    Limits,
    VersionFacts,
    findings_of,
    is_purgeable,
)
from model_manager.health import Thresholds
from model_manager.registry import VersionRecord
from model_manager.runtimes import Signature, TensorSpec
from model_manager.serving import State, VersionState

SIGNATURE = Signature((TensorSpec("input", "FP32", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),))
NOW = datetime(2024, 6, 1, tzinfo=UTC).timestamp()
HOUR = 3600.0
SHA = "a" * 64


def at(seconds_ago: float) -> datetime:
    return datetime.fromtimestamp(NOW - seconds_ago, UTC)


def version(number: int = 1, *, age: float = 20 * DAY, metadata: dict[str, Any] | None = None,
            archived_ago: float | None = None, archived: bool = False, aliases: tuple[str, ...] = (),
            pinned: bool = False) -> VersionRecord:
    return VersionRecord("iris", number, SHA, 1000, "onnx", SIGNATURE, metadata or {}, at(age),
                         archived or archived_ago is not None, aliases, pinned,
                         None if archived_ago is None else at(archived_ago))


def facts(v: VersionRecord | None = None, *, production: int | None = None, routed_as: str | None = None,
          requests: int = 0, errors: int = 0, p99: float | None = None,
          last_used: float | None = NOW - DAY, state: VersionState | None = None,
          health: dict[str, Any] | None = None,
          duplicates: tuple[tuple[str, int], ...] = ()) -> VersionFacts:
    return VersionFacts(v or version(), production, routed_as, requests, errors, p99,
                        None if last_used is None else last_used - HOUR, last_used,
                        state or VersionState(State.UNAVAILABLE), health or {"status": "unknown"},
                        duplicates)


def found(f: VersionFacts, limits: Limits | None = None,
          thresholds: Thresholds | None = None) -> list[Finding]:
    return findings_of(f, limits or Limits(), thresholds or Thresholds(), NOW)


def codes(f: VersionFacts, limits: Limits | None = None, thresholds: Thresholds | None = None) -> list[str]:
    return [x.code for x in found(f, limits, thresholds)]


def test_a_recently_used_healthy_version_has_no_findings() -> None:
    assert found(facts()) == []


# ---- NEVER_USED and STALE ---------------------------------------------------------------------


def test_a_never_used_version_within_its_grace_period_has_no_finding() -> None:
    assert codes(facts(version(age=7 * DAY - 1), last_used=None)) == []


def test_a_never_used_version_past_its_grace_period_is_never_used_with_its_age() -> None:
    assert found(facts(version(age=7 * DAY), last_used=None)) == [Finding("NEVER_USED", {
        "uploaded": "2024-05-25T00:00:00+00:00", "age_days": 7.0, "grace_days": 7.0})]


def test_the_grace_period_is_the_limits_one() -> None:
    limits = Limits(never_used_grace=DAY)
    assert found(facts(version(age=1.5 * DAY), last_used=None), limits) == [Finding("NEVER_USED", {
        "uploaded": "2024-05-30T12:00:00+00:00", "age_days": 1.5, "grace_days": 1.0})]


def test_a_never_used_version_older_than_stale_after_is_not_stale_within_the_usage_horizon() -> None:
    assert codes(facts(version(age=89 * DAY), last_used=None)) == ["NEVER_USED"]


def test_a_version_older_than_the_usage_horizon_with_no_known_request_is_stale_not_never_used() -> None:
    assert found(facts(version(age=90 * DAY), last_used=None)) == [Finding("STALE", {
        "last_used": None, "unused_days": 90.0, "stale_after_days": 30.0})]


def test_a_version_used_once_is_never_never_used() -> None:
    assert codes(facts(version(age=60 * DAY), last_used=NOW - 20 * DAY)) == []


def test_a_version_unused_for_stale_after_is_stale_with_its_last_use() -> None:
    f = facts(version(age=60 * DAY), last_used=NOW - 30 * DAY)
    assert found(f) == [Finding("STALE", {
        "last_used": "2024-05-02T00:00:00+00:00", "unused_days": 30.0, "stale_after_days": 30.0})]


def test_a_version_used_within_stale_after_is_not_stale() -> None:
    assert codes(facts(version(age=60 * DAY), last_used=NOW - 30 * DAY + 1)) == []


def test_stale_after_is_the_limits_one() -> None:
    f = facts(version(age=60 * DAY), last_used=NOW - 10 * DAY)
    assert codes(f) == []
    assert codes(f, Limits(stale_after=10 * DAY)) == ["STALE"]


# ---- SUPERSEDED -------------------------------------------------------------------------------


def test_an_older_version_than_production_without_traffic_is_superseded() -> None:
    assert found(facts(version(1), production=2)) == [Finding("SUPERSEDED", {
        "production": 2, "requests_in_window": 0, "window_days": 7.0})]


def test_superseded_evidence_names_the_limits_window() -> None:
    [finding] = found(facts(version(1), production=2), Limits(window=DAY / 2))
    assert finding.evidence["window_days"] == 0.5


@pytest.mark.parametrize("f", [
    pytest.param(facts(version(1, aliases=("staging",)), production=2), id="alias"),
    pytest.param(facts(version(1), production=2, routed_as="route"), id="routed"),
    pytest.param(facts(version(1), production=2, routed_as="shadow"), id="shadow"),
    pytest.param(facts(version(1), production=2, requests=3), id="traffic-in-window"),
    pytest.param(facts(version(1), production=None), id="no-production"),
    pytest.param(facts(version(2), production=2), id="is-production"),
    pytest.param(facts(version(3), production=2), id="newer-than-production"),
])
def test_superseded_does_not_apply(f: VersionFacts) -> None:
    assert "SUPERSEDED" not in codes(f)


# ---- DUPLICATE --------------------------------------------------------------------------------


def test_a_version_with_the_same_bytes_as_others_is_a_duplicate_naming_them() -> None:
    f = facts(duplicates=(("iris", 2), ("flowers", 7)))
    assert found(f) == [Finding("DUPLICATE", {"sha256": SHA, "same_as": [
        {"model": "iris", "version": 2}, {"model": "flowers", "version": 7}]})]


# ---- FAILED_TO_LOAD and UNHEALTHY -------------------------------------------------------------


def test_a_version_that_failed_to_load_is_failed_to_load_not_also_unhealthy() -> None:
    health = {"status": "unhealthy", "reasons": ["failed to load: truncated file"]}
    f = facts(state=VersionState(State.FAILED, "truncated file"), health=health)
    assert found(f) == [Finding("FAILED_TO_LOAD", {"reason": "truncated file"})]


def test_an_unhealthy_version_is_unhealthy_with_its_reasons() -> None:
    health = {"status": "unhealthy", "reasons": ["golden probe failed: label 2, expected 0"]}
    f = facts(state=VersionState(State.READY, size=10, last_used=NOW), health=health)
    assert found(f) == [Finding("UNHEALTHY", {"reasons": ["golden probe failed: label 2, expected 0"]})]


@pytest.mark.parametrize("status", ["healthy", "degraded", "idle", "unknown"])
def test_a_version_that_is_not_unhealthy_has_no_health_finding(status: str) -> None:
    assert codes(facts(health={"status": status, "reasons": ["p99 latency 900 ms"]})) == []


# ---- IDLE_IN_MEMORY ---------------------------------------------------------------------------


def test_a_loaded_version_unused_for_idle_after_is_idle_in_memory() -> None:
    f = facts(state=VersionState(State.READY, size=5_000_000, last_used=NOW - 2 * HOUR))
    assert found(f) == [Finding("IDLE_IN_MEMORY", {
        "loaded_bytes": 5_000_000, "last_used": "2024-05-31T22:00:00+00:00",
        "idle_hours": 2.0, "idle_after_hours": 1.0})]


def test_a_loaded_version_becomes_idle_exactly_at_idle_after() -> None:
    state = VersionState(State.READY, size=1, last_used=NOW - HOUR + 1)
    assert codes(facts(state=state)) == []
    state = VersionState(State.READY, size=1, last_used=NOW - HOUR)
    assert codes(facts(state=state)) == ["IDLE_IN_MEMORY"]


def test_idle_after_is_the_limits_one() -> None:
    f = facts(state=VersionState(State.READY, size=1, last_used=NOW - 2 * HOUR))
    assert codes(f, Limits(idle_after=3 * HOUR)) == []


@pytest.mark.parametrize("state", [State.UNAVAILABLE, State.LOADING, State.FAILED])
def test_a_version_that_is_not_loaded_is_never_idle_in_memory(state: State) -> None:
    f = facts(state=VersionState(state, "reason", last_used=NOW - 10 * DAY))
    assert "IDLE_IN_MEMORY" not in codes(f)


# ---- SLOW and ERROR_PRONE ---------------------------------------------------------------------


def test_a_version_whose_p99_passes_the_threshold_is_slow() -> None:
    assert found(facts(requests=40, p99=1.5)) == [Finding("SLOW", {
        "p99_ms": 1500.0, "threshold_ms": 1000.0, "requests": 40})]


def test_a_p99_at_the_threshold_is_not_slow() -> None:
    assert codes(facts(requests=40, p99=1.0)) == []


def test_the_version_metadata_sets_its_own_latency_threshold() -> None:
    strict = version(metadata={"health": {"max_p99_ms": 200}})
    lenient = version(metadata={"health": {"max_p99_ms": 2000}})
    assert found(facts(strict, requests=5, p99=0.25)) == [Finding("SLOW", {
        "p99_ms": 250.0, "threshold_ms": 200.0, "requests": 5})]
    assert codes(facts(lenient, requests=5, p99=1.5)) == []


def test_the_server_thresholds_apply_without_metadata() -> None:
    assert codes(facts(requests=5, p99=0.25), thresholds=Thresholds(max_p99=0.2)) == ["SLOW"]


def test_a_version_whose_error_rate_passes_the_threshold_is_error_prone() -> None:
    assert found(facts(requests=100, errors=10)) == [Finding("ERROR_PRONE", {
        "error_rate": 0.1, "threshold": 0.05, "errors": 10, "requests": 100})]


def test_an_error_rate_at_the_threshold_is_not_error_prone() -> None:
    assert codes(facts(requests=100, errors=5)) == []


def test_the_version_metadata_sets_its_own_error_rate_threshold() -> None:
    lenient = version(metadata={"health": {"max_error_rate": 0.2}})
    strict = version(metadata={"health": {"max_error_rate": 0.01}})
    assert codes(facts(lenient, requests=100, errors=10)) == []
    assert found(facts(strict, requests=100, errors=2)) == [Finding("ERROR_PRONE", {
        "error_rate": 0.02, "threshold": 0.01, "errors": 2, "requests": 100})]


def test_a_version_without_requests_is_neither_slow_nor_error_prone() -> None:
    assert codes(facts(requests=0, errors=0, p99=None)) == []


# ---- several at once, and ARCHIVED ------------------------------------------------------------


def test_findings_come_in_the_order_of_codes() -> None:
    f = facts(version(1), production=3, last_used=NOW - 40 * DAY, requests=0, errors=0, p99=None,
              state=VersionState(State.READY, size=1, last_used=NOW - 2 * HOUR),
              health={"status": "unhealthy", "reasons": ["golden probe failed"]},
              duplicates=(("iris", 2),))
    slow = facts(version(1), requests=10, errors=5, p99=3.0, duplicates=(("iris", 2),),
                 health={"status": "unhealthy", "reasons": []})
    assert codes(f) == ["STALE", "SUPERSEDED", "DUPLICATE", "UNHEALTHY", "IDLE_IN_MEMORY"]
    assert codes(slow) == ["DUPLICATE", "UNHEALTHY", "SLOW", "ERROR_PRONE"]
    assert set(codes(f) + codes(slow)) <= set(CODES)


def test_an_archived_version_is_only_archived_with_when_it_will_be_purged() -> None:
    f = facts(version(1, age=200 * DAY, archived_ago=3 * DAY), production=2, last_used=None,
              requests=100, errors=90, p99=9.0, duplicates=(("iris", 2),),
              state=VersionState(State.FAILED, "gone"))
    assert found(f) == [Finding("ARCHIVED", {
        "archived_at": "2024-05-29T00:00:00+00:00", "purge_at": "2024-06-12T00:00:00+00:00"})]


def test_purge_at_follows_the_limits_purge_after() -> None:
    [finding] = found(facts(version(archived_ago=3 * DAY)), Limits(purge_after=DAY))
    assert finding.evidence["purge_at"] == "2024-05-30T00:00:00+00:00"


def test_a_version_archived_before_archive_times_were_kept_has_no_dates() -> None:
    assert found(facts(version(archived=True))) == [Finding("ARCHIVED", {
        "archived_at": None, "purge_at": None})]


def test_a_finding_serialises_as_code_and_evidence() -> None:
    assert Finding("DUPLICATE", {"sha256": SHA}).to_json() == {"code": "DUPLICATE",
                                                                "evidence": {"sha256": SHA}}


# ---- is_purgeable -----------------------------------------------------------------------------


def test_a_version_that_is_not_archived_is_not_purgeable() -> None:
    assert not is_purgeable(version(age=400 * DAY), Limits(), NOW)


def test_an_archived_version_is_purgeable_purge_after_its_archiving() -> None:
    assert not is_purgeable(version(archived_ago=14 * DAY - 1), Limits(), NOW)
    assert is_purgeable(version(archived_ago=14 * DAY), Limits(), NOW)


def test_purge_after_is_the_limits_one() -> None:
    assert is_purgeable(version(archived_ago=DAY), Limits(purge_after=DAY), NOW)
    assert not is_purgeable(version(archived_ago=DAY), Limits(purge_after=2 * DAY), NOW)


def test_a_version_archived_without_a_time_counts_as_archived_long_ago() -> None:
    assert is_purgeable(version(archived=True), Limits(purge_after=365 * DAY), NOW)


# ---- Limits.overridden ------------------------------------------------------------------------


def test_overridden_limits_take_durations_by_name_and_keep_the_rest() -> None:
    limits = Limits().overridden({"stale_after": "30d", "idle_after": "12h", "window": 600,
                                  "purge_after": "1.5d"})
    assert limits == Limits(window=600.0, stale_after=30 * DAY, never_used_grace=7 * DAY,
                            idle_after=12 * HOUR, purge_after=1.5 * DAY)


def test_overriding_leaves_the_original_limits_alone() -> None:
    limits = Limits(stale_after=DAY)
    assert limits.overridden({"stale_after": "2d"}).stale_after == 2 * DAY
    assert limits.stale_after == DAY


def test_a_limit_given_as_none_is_not_overridden() -> None:
    limits = Limits(window=DAY)
    assert limits.overridden({"window": None, "stale_after": None}) == limits


@pytest.mark.parametrize("value", ["soon", "30 days", "-1d", "1w", ""])
def test_a_bad_duration_is_invalid_input_naming_the_limit(value: str) -> None:
    with pytest.raises(InvalidInput, match=r"^stale_after: not a duration"):
        Limits().overridden({"stale_after": value})


def test_limits_serialise_in_days() -> None:
    assert Limits(window=DAY / 2, idle_after=HOUR).to_json() == {
        "window_days": 0.5, "stale_after_days": 30.0, "never_used_grace_days": 7.0,
        "idle_after_days": 0.0417, "purge_after_days": 14.0}


# ---- VersionFacts.protected_by ----------------------------------------------------------------


@pytest.mark.parametrize(("f", "held"), [
    (facts(version()), []),
    (facts(version(aliases=("production", "staging"))), ["alias production", "alias staging"]),
    (facts(version(), routed_as="route"), ["traffic route"]),
    (facts(version(), routed_as="shadow"), ["traffic shadow"]),
    (facts(version(), routed_as="default route"), ["traffic default route"]),
    (facts(version(pinned=True)), ["pinned"]),
    (facts(version(aliases=("canary",), pinned=True), routed_as="route"),
     ["alias canary", "traffic route", "pinned"]),
])
def test_protected_by_names_what_keeps_cleanup_away(f: VersionFacts, held: list[str]) -> None:
    assert f.protected_by == held


@pytest.mark.parametrize("value", [[1], True, -86400, float("inf")])
def test_limits_refuse_values_that_are_not_durations(value: object) -> None:
    with pytest.raises(InvalidInput, match="stale_after"):
        Limits().overridden({"stale_after": value})
