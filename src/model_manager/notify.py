"""``Notifier``: a model's owners are told when it goes wrong, by webhook.

A model's settings name its ``owner`` and ``notify`` targets (URLs with the events each wants).
Events come from the lifecycle events the server already logs (``crashed``, ``load_failed``,
``auto_rollback``, ``drift``, a cleanup that archives a version) and from ``HealthWatch``, which turns a
version's health changes into ``unhealthy``, ``degraded`` and ``recovered``.

Each message is a row in the registry's ``notifications`` table before it is sent: a JSON POST
of the model, version, event, reason, owner and a link to the model's dashboard page, signed
(``X-Model-Manager-Signature: sha256=HMAC(secret, timestamp "." body)``) when the target has a
secret. A failed delivery is retried with backoff (``--notify-retry``, 10 s, doubling up to
``RETRY_MAX``) for ``GIVE_UP_AFTER``, then marked failed; the rows are the delivery log
(``GET /api/models/{name}/notifications``). A model sends at most one message per event kind
per cooldown (across replicas: the table is checked), so a flapping model floods nobody.

Nothing here runs on the request path: ``notify`` appends to an in-memory inbox (any thread,
no I/O), and ``deliver`` (periodic, on the event loop) writes, sends and updates; a receiver that
hangs costs one ``SEND_TIMEOUT`` of a background task. ``deliver`` asks the registry for due
messages only when it has reason to (``LOOK_EVERY``), not every round.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import heapq
import hmac
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread
import httpx
import sqlalchemy as sa

from model_manager.clock import iso
from model_manager.registry import Registry, VersionRecord
from model_manager.registry import schema as t
from model_manager.serving.model_settings import NotifyTarget, SettingsCache

log = logging.getLogger(__name__)

COOLDOWN = 900.0
"""Seconds during which a model sends one message per event kind."""
SEND_TIMEOUT = 5.0
RETRY_FIRST = 10.0
RETRY_MAX = 3600.0
GIVE_UP_AFTER = 86400.0
LOOK_EVERY = 10.0
"""Seconds between looks in the registry for due messages this notifier has no word of: those
another worker or replica (or an earlier run) claimed and never settled. Its own messages are
looked for when it writes them and when their retry comes due, not every round."""
DUE_BATCH = 100
"""Due messages sent in one round at most."""
INBOX_LIMIT = 10_000
LOG_ROWS = 100

_FROM_EVENTS = {"crashed": "crashed", "load_failed": "load_failed", "auto_rollback": "auto_rollback",
                "drift": "drift", "cleanup_planned": "cleanup_planned"}
"""Lifecycle events (``EventLog``) that are notifications of the same name."""


class Notifier:
    def __init__(self, registry: Registry, settings: SettingsCache, replica: str,
                 dashboard: str, cooldown: float = COOLDOWN,
                 clock: Callable[[], float] = time.time, retry: float = RETRY_FIRST) -> None:
        self._registry = registry
        self._settings = settings
        self._replica = replica
        self._dashboard = dashboard.rstrip("/")
        self._cooldown = cooldown
        self._clock = clock
        self._retry = retry
        self._inbox: collections.deque[dict[str, Any]] = collections.deque(maxlen=INBOX_LIMIT)
        self._writing = 0
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._look_at = -math.inf
        """When the next look for others' due messages is (this notifier's clock)."""
        self._retries: list[float] = []
        """A heap of when this notifier's failed messages are next due."""
        self._client: httpx.AsyncClient | None = None

    # gathering (any thread, no I/O)

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        """An ``EventLog`` listener: lifecycle events that owners want to hear of."""
        kind = _FROM_EVENTS.get(event)
        if event == "cleanup_action" and fields.get("action") == "archive":
            kind = "archived"
        if kind is None or "model" not in fields:
            return
        reason = fields.get("reason") or fields.get("finding") or kind
        self.notify(str(fields["model"]), fields.get("version"), kind, str(reason))

    def notify(self, model: str, version: int | None, event: str, reason: str) -> None:
        """Queue ``event`` for the model's targets that want it, unless one of its kind went
        out within the cooldown."""
        if not self._settings.get(model).targets_for(event):
            return
        now = self._clock()
        with self._lock:
            last = self._last.get((model, event))
            if last is not None and now - last < self._cooldown:
                return
            self._last[(model, event)] = now
        self._inbox.append({"model": model, "version": version, "event": event,
                            "reason": reason, "at": now})

    @property
    def queued(self) -> int:
        """Messages gathered and not yet written (each delivery round writes them all)."""
        return len(self._inbox) + self._writing

    # delivering (the event loop)

    async def deliver(self) -> None:
        """Write what was queued, then send every message of this replica that is due."""
        queued = []
        while self._inbox:
            queued.append(self._inbox.popleft())
            self._writing += 1
        try:
            if queued:
                await anyio.to_thread.run_sync(self._write, queued)
        finally:
            self._writing -= len(queued)
        if not self._should_look(bool(queued)):
            return
        try:
            due = await anyio.to_thread.run_sync(self._due)
        except BaseException:
            self._look_at = -math.inf  # the registry may be down: look again next round
            raise
        if len(due) == DUE_BATCH:
            self._look_at = -math.inf  # there may be more: look again next round
        if due:
            results = await asyncio.gather(*(self._send(row) for row in due))
            await anyio.to_thread.run_sync(self._settle, list(zip(due, results, strict=True)))

    def _should_look(self, wrote: bool) -> bool:
        """Whether this round asks the registry for due messages: after writing some, when a
        retry of this notifier's comes due, and every ``LOOK_EVERY`` for anyone else's. An
        idle server then sends no query a second."""
        now = self._clock()
        with self._lock:  # a test message's settle may push a retry meanwhile
            retry_due = bool(self._retries) and self._retries[0] <= now
            while self._retries and self._retries[0] <= now:
                heapq.heappop(self._retries)
        if not (wrote or retry_due or now >= self._look_at):
            return False
        self._look_at = now + LOOK_EVERY
        return True

    async def test(self, model: str) -> list[dict[str, Any]]:
        """Send a ``test`` event to every target of the model now; the rows as they stand
        after the first attempt."""
        message = {"model": model, "version": None, "event": "test",
                   "reason": "a test message (model-manager notify test)", "at": self._clock()}
        ids = await anyio.to_thread.run_sync(self._write, [message], False, True)
        rows = await anyio.to_thread.run_sync(self._rows, ids)
        results = await asyncio.gather(*(self._send(row) for row in rows))
        await anyio.to_thread.run_sync(self._settle, list(zip(rows, results, strict=True)))
        return [_row_json(row) for row in await anyio.to_thread.run_sync(self._rows, ids)]

    def log(self, model: str, limit: int = LOG_ROWS) -> list[dict[str, Any]]:
        """The model's messages, newest first (blocking: call from a thread)."""
        with self._registry.engine.connect() as conn:
            rows = conn.execute(sa.select(t.notifications).where(t.notifications.c.model == model)
                                .order_by(t.notifications.c.id.desc()).limit(limit)).all()
        return [_row_json(row) for row in rows]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _write(self, messages: list[dict[str, Any]], cooled: bool = True,
               claimed: bool = False) -> list[int]:
        """One row per message and target (a message whose kind another replica sent within the
        cooldown is dropped, when ``cooled``); the new rows' ids. ``claimed`` rows are being
        sent by the caller: no delivery round finds them due meanwhile."""
        ids: list[int] = []
        now = self._registry.now()
        due = now + timedelta(seconds=3 * SEND_TIMEOUT) if claimed else now
        with self._registry.writing() as conn:
            for message in messages:
                model, event = message["model"], message["event"]
                if cooled and self._sent_recently(conn, model, event, now):
                    continue
                settings = self._settings.get(model)
                payload = {"model": model, "version": message["version"], "event": event,
                           "reason": message["reason"], "owner": settings.owner,
                           "at": iso(message["at"]),
                           "link": f"{self._dashboard}/dashboard/models/{model}"}
                for target in settings.targets_for(event):
                    inserted = conn.execute(t.notifications.insert().values(
                        model=model, version=message["version"], event=event, url=target.url,
                        payload=payload, status="pending", attempts=0, replica=self._replica,
                        created_at=now, next_attempt_at=due)).inserted_primary_key
                    assert inserted is not None
                    ids.append(int(inserted[0]))
        return ids

    def _sent_recently(self, conn: sa.Connection, model: str, event: str, now: datetime) -> bool:
        since = now - timedelta(seconds=self._cooldown)
        query = sa.select(t.notifications.c.id).where(
            t.notifications.c.model == model, t.notifications.c.event == event,
            t.notifications.c.created_at > since).limit(1)
        return conn.execute(query).first() is not None

    def _due(self) -> list[Any]:
        """The pending messages whose attempt is due, each claimed for this attempt (its next
        attempt moved past the send timeout), so that no other worker or replica sends it too;
        one whose sender died is sent by whoever finds it due next."""
        now = self._registry.now()
        notifications = t.notifications
        query = sa.select(notifications).where(
            notifications.c.status == "pending", notifications.c.next_attempt_at <= now
        ).order_by(notifications.c.id).limit(DUE_BATCH)
        with self._registry.engine.connect() as conn:  # mostly nothing is due: no write then
            if conn.execute(query.with_only_columns(notifications.c.id)).first() is None:
                return []
        claimed = []
        with self._registry.writing() as conn:
            for row in conn.execute(query).all():
                taken = conn.execute(notifications.update().where(
                    notifications.c.id == row.id,
                    notifications.c.next_attempt_at == row.next_attempt_at
                ).values(next_attempt_at=now + timedelta(seconds=3 * SEND_TIMEOUT))).rowcount
                if taken:
                    claimed.append(row)
        return claimed

    def _rows(self, ids: list[int]) -> list[Any]:
        with self._registry.engine.connect() as conn:
            return list(conn.execute(sa.select(t.notifications).where(
                t.notifications.c.id.in_(ids)).order_by(t.notifications.c.id)).all())

    async def _send(self, row: Any) -> str | None:
        """POST one message; None when the receiver took it (2xx), else why not."""
        target = next((x for x in self._settings.get(row.model).notify if x.url == row.url),
                      NotifyTarget(row.url))
        body = json.dumps({"id": row.id, **row.payload}, sort_keys=True).encode()
        headers = {"content-type": "application/json", "x-model-manager-event": row.event,
                   "user-agent": "model-manager-notify"}
        if target.secret:
            stamp = str(int(self._clock()))
            digest = hmac.new(target.secret.encode(), stamp.encode() + b"." + body,
                              hashlib.sha256).hexdigest()
            headers["x-model-manager-timestamp"] = stamp
            headers["x-model-manager-signature"] = f"sha256={digest}"
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=SEND_TIMEOUT, follow_redirects=False)
        try:
            response = await self._client.post(row.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"

    def _settle(self, outcomes: list[tuple[Any, str | None]]) -> None:
        now = self._registry.now()
        with self._registry.writing() as conn:
            for row, error in outcomes:
                attempts = row.attempts + 1
                values: dict[str, Any] = {"attempts": attempts, "last_error": error}
                if error is None:
                    values.update(status="delivered", delivered_at=now, next_attempt_at=None)
                elif (now - row.created_at).total_seconds() >= GIVE_UP_AFTER:
                    values.update(status="failed", next_attempt_at=None)
                    log.warning("notification %d to %s given up after %d attempts: %s", row.id,
                                row.url, attempts, error)
                else:
                    wait = min(self._retry * 2 ** (attempts - 1), RETRY_MAX)
                    values["next_attempt_at"] = now + timedelta(seconds=wait)
                    with self._lock:
                        heapq.heappush(self._retries, self._clock() + wait)
                conn.execute(t.notifications.update().where(t.notifications.c.id == row.id)
                             .values(**values))


class HealthWatch:
    """Turns health changes of the versions of models with notify targets into notifications:
    into ``unhealthy``, into ``degraded`` from a good state (not on the way back from
    unhealthy), and ``recovered`` once healthy again, naming the worst it had been."""

    def __init__(self, notifier: Notifier, settings: SettingsCache,
                 versions: Callable[[str], list[VersionRecord]],
                 health: Callable[[VersionRecord], dict[str, Any]]) -> None:
        self._notifier = notifier
        self._settings = settings
        self._versions = versions
        self._health = health
        self._last: dict[tuple[str, int], str] = {}
        self._worst: dict[tuple[str, int], str] = {}
        """The worst status since the version was last healthy (unhealthy or degraded)."""

    def seen(self, model: str) -> dict[str, str]:
        """The status each version of ``model`` had when last assessed, by version number."""
        return {str(number): status for (name, number), status in sorted(self._last.items())
                if name == model}

    def check(self) -> None:
        """Assess the watched versions (blocking: call from a thread)."""
        for model in self._settings.notified():
            for version in self._versions(model):
                key = (model, version.number)
                report = self._health(version)
                status, before = report["status"], self._last.get(key)
                self._last[key] = status
                if status == before:
                    continue
                reason = "; ".join(report["reasons"]) or status
                worst = self._worst.get(key)
                if status == "unhealthy" or (status == "degraded" and worst is None):
                    self._worst[key] = status
                    self._notifier.notify(model, version.number, status, reason)
                elif status == "healthy" and worst is not None:
                    del self._worst[key]
                    self._notifier.notify(model, version.number, "recovered",
                                          f"healthy again (was {worst})")


def _row_json(row: Any) -> dict[str, Any]:
    return {"id": row.id, "version": row.version, "event": row.event, "url": row.url,
            "status": row.status, "attempts": row.attempts, "last_error": row.last_error,
            "reason": row.payload.get("reason"),
            "created_at": iso(row.created_at.timestamp()),
            "next_attempt_at": None if row.next_attempt_at is None
            else iso(row.next_attempt_at.timestamp()),
            "delivered_at": None if row.delivered_at is None else iso(row.delivered_at.timestamp())}
