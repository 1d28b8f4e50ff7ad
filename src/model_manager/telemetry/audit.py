"""``AuditTrail``: audit events the server records of its own accord (a cleanup's unload).

An event is written at once when the registry answers. While it is unreachable the event waits in
memory with the time it happened, at most ``MAX_PENDING`` of them (past it the oldest is dropped
and counted in ``writes_dropped``), and the periodic flush writes them in order, once, when it is
back.
Changes that are themselves registry writes (an alias move, a traffic policy) are audited in
their own transaction instead, and refused while the registry is unreachable.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

from model_manager.errors import Unreachable
from model_manager.registry import EventRecord, Registry, acting_as
from model_manager.telemetry.outbox import Outbox

log = logging.getLogger(__name__)

MAX_PENDING = 10_000


class AuditTrail:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._lock = threading.Lock()
        self._pending: collections.deque[EventRecord] = collections.deque(maxlen=MAX_PENDING)
        self._outbox: Outbox[list[EventRecord]] = Outbox(self._lock, self._write)
        self.writes_dropped = 0

    def record(self, model: str, kind: str, details: dict[str, Any],
               actor: str | None = None) -> None:
        """Audit an event now, or as soon as the registry answers (blocking: call from a
        thread)."""
        event = EventRecord(model, kind, details, actor or acting_as.get(), self._registry.now())
        with self._lock:
            if len(self._pending) == self._pending.maxlen:
                self.writes_dropped += 1
            self._pending.append(event)
        try:
            self.flush()
        except Unreachable as exc:
            log.info("audit event %s for %r kept until the registry answers: %s", kind, model,
                     exc.message)

    def flush(self) -> None:
        self._outbox.flush(self._take)

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._outbox.unsent or ())

    def _take(self) -> list[EventRecord] | None:
        events = list(self._pending)
        self._pending.clear()
        return events or None

    def _write(self, batch: str, events: list[EventRecord]) -> None:
        self._registry.write_once(batch, lambda conn: self._registry.append_events(conn, events))
