"""The notifier's gathering with a real SQLite registry: which lifecycle events become which
notifications, health changes into unhealthy, degraded and recovered, the cooldown kept
across two replicas sharing the registry, and when delivery looks for due messages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from model_manager import notify
from model_manager.notify import HealthWatch, Notifier
from model_manager.registry import Registry, VersionRecord
from model_manager.runtimes import Signature
from model_manager.serving.model_settings import SettingsCache

SIGNATURE = Signature.from_json({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
                                 "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}]})
HOOK = "http://127.0.0.1:9/hook"  # never reached: these tests stop before sending


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry.from_url(f"sqlite:///{tmp_path}/r.db")
    registry.migrate()
    for name in ("watched", "quiet"):
        registry.create_version(name, sha256="0" * 64, size=1, format="onnx",
                                signature=SIGNATURE, metadata={})
    yield registry
    registry.close()


@pytest.fixture
def settings(registry: Registry) -> SettingsCache:
    settings = SettingsCache(registry, 0.0)
    settings.update("watched", {"owner": "team", "notify": [{"url": HOOK}]})
    return settings


def queued_events(notifier: Notifier) -> list[tuple[str, int | None, str]]:
    return [(m["event"], m["version"], m["reason"]) for m in notifier._inbox]


def test_lifecycle_events_become_notifications(registry: Registry,
                                               settings: SettingsCache) -> None:
    notifier = Notifier(registry, settings, "r1", "http://server")
    notifier.on_event("crashed", {"model": "watched", "version": 1, "reason": "SIGSEGV"})
    notifier.on_event("load_failed", {"model": "watched", "version": 1, "reason": "bad file"})
    notifier.on_event("auto_rollback", {"model": "watched", "version": 2, "reason": "p99"})
    notifier.on_event("cleanup_action", {"action": "archive", "model": "watched", "version": 1,
                                         "finding": "STALE"})
    notifier.on_event("cleanup_action", {"action": "unload", "model": "watched", "version": 1})
    notifier.on_event("load", {"model": "watched", "version": 1})
    notifier.on_event("crashed", {"model": "quiet", "version": 1, "reason": "no targets"})
    assert queued_events(notifier) == [("crashed", 1, "SIGSEGV"), ("load_failed", 1, "bad file"),
                                       ("auto_rollback", 2, "p99"), ("archived", 1, "STALE")]


def test_a_target_hears_only_the_events_it_wants(registry: Registry,
                                                 settings: SettingsCache) -> None:
    settings.update("watched", {"notify": [{"url": HOOK, "events": ["crashed"]}]})
    notifier = Notifier(registry, settings, "r1", "http://server")
    notifier.notify("watched", 1, "degraded", "slow")
    notifier.notify("watched", 1, "crashed", "SIGKILL")
    assert [e[0] for e in queued_events(notifier)] == ["crashed"]


def test_health_changes_are_told_and_recovery_too(registry: Registry,
                                                  settings: SettingsCache) -> None:
    notifier = Notifier(registry, settings, "r1", "http://server", cooldown=0)
    statuses = iter(["unknown", "healthy", "degraded", "degraded", "unhealthy", "healthy", "idle"])

    def health(version: VersionRecord) -> dict[str, Any]:
        status = next(statuses)
        return {"status": status, "reasons": [f"it is {status}"]}

    watch = HealthWatch(notifier, settings, lambda model: list(registry.get_model(model).versions),
                        health)
    for _ in range(7):
        watch.check()
    assert queued_events(notifier) == [
        ("degraded", 1, "it is degraded"), ("unhealthy", 1, "it is unhealthy"),
        ("recovered", 1, "healthy again (was unhealthy)")]
    assert watch.seen("watched") == {"1": "idle"} and watch.seen("quiet") == {}


def test_the_cooldown_holds_across_replicas(registry: Registry, settings: SettingsCache) -> None:
    first = Notifier(registry, settings, "r1", "http://server")
    second = Notifier(registry, SettingsCache(registry, 0.0), "r2", "http://other")
    second._settings.refresh()
    first.notify("watched", 1, "unhealthy", "probe failed")
    first.notify("watched", 1, "unhealthy", "probe failed again")  # within this one's cooldown
    assert len(queued_events(first)) == 1
    written = first._write(list(first._inbox))
    second.notify("watched", 1, "unhealthy", "seen by the other replica")
    assert second._write(list(second._inbox)) == []  # the first one told them already
    assert len(written) == 1
    log = first.log("watched")
    assert [(n["event"], n["status"], n["reason"]) for n in log] == [
        ("unhealthy", "pending", "probe failed")]


def test_due_messages_are_looked_for_when_there_is_reason_to(registry: Registry,
                                                              settings: SettingsCache) -> None:
    """An idle notifier does not query the registry every round: it looks after writing, when
    a retry of its own comes due, and every LOOK_EVERY for messages another replica left."""
    now = [1_000_000.0]
    registry.clock = lambda: now[0]
    notifier = Notifier(registry, settings, "r1", "http://server", clock=registry.clock, retry=5.0)
    other = Notifier(registry, settings, "r2", "http://other", clock=registry.clock)
    looks: list[str] = []

    def count_looks(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM notifications" in statement and "next_attempt_at <=" in statement:
            looks.append(statement)

    sa.event.listen(registry.engine, "before_cursor_execute", count_looks)

    def round_at(seconds: float) -> int:
        now[0] = 1_000_000.0 + seconds
        looks.clear()
        asyncio.run(deliver_and_close(notifier))
        return len(looks)

    assert round_at(0) == 1  # the first round looks (an earlier run may have left some)
    assert [round_at(s) for s in (1, 2, 9)] == [0, 0, 0]
    other.notify("watched", 1, "unhealthy", "left by a replica that died before sending it")
    other._write(list(other._inbox))
    assert round_at(9.5) == 0
    assert round_at(notify.LOOK_EVERY) >= 1  # found: sent (refused by the hook), retry in 5 s
    [row] = notifier.log("watched")
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert [round_at(notify.LOOK_EVERY + s) for s in (1, 2, 3, 4)] == [0, 0, 0, 0]
    assert round_at(notify.LOOK_EVERY + 5) >= 1  # its retry came due
    assert notifier.log("watched")[0]["attempts"] == 2
    notifier.notify("watched", 1, "crashed", "its own message")
    assert round_at(notify.LOOK_EVERY + 6) >= 1  # written this round: looked for at once
    assert {(r["event"], r["attempts"]) for r in notifier.log("watched")} == {
        ("unhealthy", 2), ("crashed", 1)}


async def deliver_and_close(notifier: Notifier) -> None:
    try:
        await notifier.deliver()
    finally:
        await notifier.close()
        notifier._client = None
