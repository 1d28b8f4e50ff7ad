"""The cleanup plan over a hand-built fleet: which actions, in which order, and what they free."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from datetime import UTC, datetime

import pytest

from model_manager.governance.cleanup import plan
from model_manager.governance.facts import Fleet
from model_manager.governance.findings import DAY, Limits, VersionFacts
from model_manager.health import Thresholds
from model_manager.registry import ModelRecord, VersionRecord
from model_manager.runtimes import Signature, TensorSpec
from model_manager.serving import State, VersionState

SIGNATURE = Signature((TensorSpec("input", "FP32", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),))
NOW = datetime(2024, 6, 1, tzinfo=UTC).timestamp()
HOUR = 3600.0
ORPHAN = "f" * 64


def at(seconds_ago: float) -> datetime:
    return datetime.fromtimestamp(NOW - seconds_ago, UTC)


def facts(model: str, number: int, *, sha: str | None = None, size: int = 1000, age: float = 100 * DAY,
          last_used: float | None = NOW - DAY, archived_ago: float | None = None,
          loaded_idle_for: float | None = None, production: int | None = None,
          aliases: tuple[str, ...] = (), pinned: bool = False,
          routed_as: str | None = None) -> VersionFacts:
    """A version 100 days old, used a day ago, not loaded, unless told otherwise."""
    version = VersionRecord(model, number, sha or f"{model}{number}".ljust(64, "0"), size, "onnx",
                            SIGNATURE, {}, at(age), archived_ago is not None, aliases, pinned,
                            None if archived_ago is None else at(archived_ago))
    state = (VersionState(State.UNAVAILABLE) if loaded_idle_for is None else
             VersionState(State.READY, size=size * 3, last_used=NOW - loaded_idle_for))
    return VersionFacts(version, production, routed_as, 0, 0, None, last_used, last_used, state,
                        {"status": "unknown"})


def fleet(*all_facts: VersionFacts, orphans: dict[str, int] | None = None) -> Fleet:
    """The fleet of these versions; the store holds their blobs and the orphans."""
    names = sorted({f.version.model for f in all_facts})
    models = [ModelRecord(name, at(200 * DAY),
                          tuple(f.version for f in all_facts if f.version.model == name),
                          {}) for name in names]
    blobs = {f.version.sha256: f.version.size for f in all_facts} | (orphans or {})
    return Fleet(models, {(f.version.model, f.version.number): f for f in all_facts}, {}, blobs, NOW)


def planned(f: Fleet, findings: Collection[str] | None = None, model: str | None = None,
            limits: Limits | None = None) -> list[tuple[str, str | None, int | None, str, int]]:
    actions = plan(f, limits or Limits(), Thresholds(), findings, model)
    return [(a.action, a.model, a.version, a.finding, a.reclaims_bytes) for a in actions]


def test_a_fleet_in_use_needs_no_cleanup() -> None:
    assert plan(fleet(facts("iris", 1), facts("iris", 2)), Limits(), Thresholds()) == []


def test_actions_come_unload_archive_purge_then_orphan_blobs() -> None:
    f = fleet(facts("iris", 1, archived_ago=20 * DAY, size=700),
              facts("iris", 2, last_used=NOW - 40 * DAY),
              facts("iris", 3, loaded_idle_for=2 * HOUR, size=500),
              orphans={ORPHAN: 42})
    assert planned(f) == [("unload", "iris", 3, "IDLE_IN_MEMORY", 1500),
                          ("archive", "iris", 2, "STALE", 0),
                          ("purge", "iris", 1, "ARCHIVED", 700),
                          ("delete_blob", None, None, "ORPHAN_BLOB", 42)]


def test_a_stale_version_still_in_memory_is_unloaded_before_it_is_archived() -> None:
    f = fleet(facts("iris", 1, last_used=NOW - 40 * DAY, loaded_idle_for=40 * DAY, size=10))
    assert planned(f) == [("unload", "iris", 1, "IDLE_IN_MEMORY", 30),
                          ("archive", "iris", 1, "STALE", 0)]


def test_archive_and_purge_actions_name_the_blob() -> None:
    f = fleet(facts("iris", 1, archived_ago=20 * DAY, sha="1" * 64),
              facts("iris", 2, last_used=None, sha="2" * 64))
    actions = plan(f, Limits(), Thresholds())
    assert [(a.action, a.sha256) for a in actions] == [("archive", "2" * 64), ("purge", "1" * 64)]
    assert actions[0].to_json() == {"action": "archive", "model": "iris", "version": 2,
                                    "finding": "STALE", "reclaims_bytes": 0, "sha256": "2" * 64,
                                    "done": False, "error": None}


def test_an_archived_version_is_purged_only_purge_after_its_archiving() -> None:
    f = fleet(facts("iris", 1, archived_ago=13 * DAY))
    assert planned(f) == []
    assert planned(f, limits=Limits(purge_after=10 * DAY)) == [("purge", "iris", 1, "ARCHIVED", 1000)]


def test_the_archive_reason_is_the_first_archivable_finding() -> None:
    superseded_and_stale = facts("iris", 1, last_used=NOW - 40 * DAY, production=2)
    f = fleet(superseded_and_stale, facts("iris", 2))
    assert planned(f) == [("archive", "iris", 1, "STALE", 0)]
    assert planned(f, findings=["SUPERSEDED"]) == [("archive", "iris", 1, "SUPERSEDED", 0)]


@pytest.mark.parametrize(("aliases", "pinned", "routed_as"), [
    (("staging",), False, None), ((), True, None), ((), False, "route"), ((), False, "shadow"),
    ((), False, "default route"),
], ids=["alias", "pinned", "route", "shadow", "default-route"])
def test_a_protected_version_is_never_in_the_plan(aliases: tuple[str, ...], pinned: bool,
                                                  routed_as: str | None) -> None:
    stale_and_idle = facts("iris", 1, last_used=NOW - 40 * DAY, loaded_idle_for=40 * DAY,
                           aliases=aliases, pinned=pinned, routed_as=routed_as)
    unprotected = facts("iris", 2, last_used=NOW - 40 * DAY, loaded_idle_for=40 * DAY)
    assert planned(fleet(stale_and_idle, unprotected)) == [("unload", "iris", 2, "IDLE_IN_MEMORY", 3000),
                                                           ("archive", "iris", 2, "STALE", 0)]


def test_a_pinned_archived_version_is_not_purged() -> None:
    assert planned(fleet(facts("iris", 1, archived_ago=100 * DAY, pinned=True))) == []


def test_only_the_findings_asked_for_are_acted_on() -> None:
    f = fleet(facts("iris", 1, archived_ago=20 * DAY),
              facts("iris", 2, last_used=NOW - 40 * DAY),
              facts("iris", 3, last_used=None, age=10 * DAY),
              facts("iris", 4, loaded_idle_for=2 * HOUR),
              orphans={ORPHAN: 42})
    assert planned(f, findings=["STALE"]) == [("archive", "iris", 2, "STALE", 0)]
    assert planned(f, findings=["NEVER_USED", "SUPERSEDED"]) == [("archive", "iris", 3, "NEVER_USED", 0)]
    assert planned(f, findings=["ORPHAN_BLOB"]) == [("delete_blob", None, None, "ORPHAN_BLOB", 42)]
    assert planned(f, findings=["ARCHIVED", "IDLE_IN_MEMORY"]) == [
        ("unload", "iris", 4, "IDLE_IN_MEMORY", 3000), ("purge", "iris", 1, "ARCHIVED", 1000)]
    assert planned(f, findings=[]) == []


def test_a_plan_for_one_model_leaves_orphan_blobs_alone() -> None:
    f = fleet(facts("iris", 1, last_used=NOW - 40 * DAY), orphans={ORPHAN: 42})
    assert planned(f, model="iris") == [("archive", "iris", 1, "STALE", 0)]
    assert planned(f, findings=["ORPHAN_BLOB"], model="iris") == []


def test_a_purge_whose_blob_a_remaining_version_shares_reclaims_nothing() -> None:
    f = fleet(facts("iris", 1, archived_ago=20 * DAY, sha="1" * 64, size=700),
              facts("iris", 2, sha="1" * 64, size=700))
    assert planned(f) == [("purge", "iris", 1, "ARCHIVED", 0)]


def test_a_purge_whose_blob_a_version_archived_too_recently_shares_reclaims_nothing() -> None:
    f = fleet(facts("iris", 1, archived_ago=20 * DAY, sha="1" * 64, size=700),
              facts("flowers", 1, archived_ago=DAY, sha="1" * 64, size=700))
    assert planned(f) == [("purge", "iris", 1, "ARCHIVED", 0)]


def test_orphan_blobs_become_delete_blob_actions_by_digest() -> None:
    f = fleet(facts("iris", 1), facts("iris", 2, archived_ago=DAY),
              orphans={"c" * 64: 3, "b" * 64: 2})
    actions = plan(f, Limits(), Thresholds())
    assert [(a.action, a.sha256, a.reclaims_bytes, a.finding) for a in actions] == [
        ("delete_blob", "b" * 64, 2, "ORPHAN_BLOB"), ("delete_blob", "c" * 64, 3, "ORPHAN_BLOB")]
    assert all(a.model is None and a.version is None for a in actions)


def test_planning_marks_nothing_done() -> None:
    f = fleet(facts("iris", 1, last_used=NOW - 40 * DAY), orphans={ORPHAN: 1})
    assert [(a.done, a.error) for a in plan(f, Limits(), Thresholds())] == [(False, None)] * 2



def test_a_blob_shared_by_two_purged_versions_is_freed_once() -> None:
    f = fleet(facts("iris", 1, archived_ago=20 * DAY, sha="1" * 64, size=700),
              facts("iris", 2, archived_ago=20 * DAY, sha="1" * 64, size=700))
    assert sum(a[4] for a in planned(f)) == 700


def test_a_pinned_archived_version_keeps_its_shared_blob() -> None:
    f = fleet(facts("iris", 1, archived_ago=20 * DAY, sha="1" * 64, size=700),
              facts("iris", 2, archived_ago=20 * DAY, sha="1" * 64, size=700, pinned=True))
    assert planned(f) == [("purge", "iris", 1, "ARCHIVED", 0)]


def test_a_blob_another_model_shares_is_not_counted_when_planning_one_model() -> None:
    shared = dataclasses.replace(facts("iris", 1, archived_ago=20 * DAY, sha="1" * 64, size=700),
                                 duplicates=(("flowers", 1),))
    only_iris = fleet(shared)
    assert planned(only_iris, model="iris") == [("purge", "iris", 1, "ARCHIVED", 0)]
