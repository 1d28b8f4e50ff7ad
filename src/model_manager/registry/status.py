"""``RegistryStatus``: whether the registry's database answers, and since when.

The engine reports to it every statement that ran and every error that means the database cannot
be reached (a refused or dropped connection) or written (SQLite on a full disk or a read-only
filesystem, PostgreSQL out of space or read-only after a failover). Such an error is raised as
``Unreachable`` instead of the driver's, so every caller sees one domain error: a management call
answers 503, a background flush keeps its batch for the next round. A change of state is logged
once, not once per failed call.

States: ``ok``; ``unreachable`` (nothing answers; any statement that runs ends it); ``unwritable``
(reads work, writes fail; only a committed write ends it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from model_manager.clock import iso
from model_manager.errors import Unreachable

log = logging.getLogger(__name__)

_UNWRITABLE_SQLSTATES = {"25006", "53100"}  # read-only transaction; disk full
_UNWRITABLE_TEXT = ("readonly database", "disk is full", "No space left")


class RegistryStatus:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.state = "ok"
        self.error: str | None = None
        self.since: float | None = None
        """When the current trouble began (None while ``ok``)."""
        self.last_success: float | None = None
        """When a statement last ran."""

    @property
    def is_up(self) -> bool:
        return self.state == "ok"

    def down_seconds(self) -> float:
        """Seconds since the trouble began; 0 while the registry answers."""
        since = self.since
        return 0.0 if since is None else max(self._clock() - since, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "error": self.error, "since": iso(self.since),
                "down_seconds": round(self.down_seconds(), 3),
                "last_success": iso(self.last_success)}

    def on_statement(self) -> None:
        """A statement ran: the database answers (still unwritable until a write commits)."""
        self.last_success = self._clock()
        if self.state == "unreachable":
            self._recover()

    def on_commit(self) -> None:
        """A write transaction committed."""
        self.last_success = self._clock()
        if self.state != "ok":
            self._recover()

    def on_error(self, context: sa.engine.ExceptionContext) -> Unreachable | None:
        """The engine's ``handle_error`` hook: an error that means the database cannot be
        reached or written becomes ``Unreachable``; any other is left as it is."""
        state = _trouble(context)
        if state is None:
            return None
        message = _first_line(context.original_exception)
        with self._lock:
            if self.state != state:
                self._enter(state, message)
        verb = "cannot be written" if state == "unwritable" else "is unreachable"
        return Unreachable(f"the registry {verb}: {message}; retry shortly")

    def _enter(self, state: str, message: str) -> None:
        if self.since is None:
            self.since = self._clock()
        self.state, self.error = state, message
        ago = "never" if self.last_success is None else f"{self._clock() - self.last_success:.1f}s ago"
        log.error("the registry %s (last answer %s): %s. Loaded models go on serving with their "
                  "last known routes; usage, shadow and audit writes wait in memory until it is "
                  "back", "cannot be written" if state == "unwritable" else "is unreachable", ago,
                  message)

    def _recover(self) -> None:
        with self._lock:
            if self.state == "ok":
                return
            log.warning("the registry answers again after %.1fs %s", self.down_seconds(), self.state)
            self.state, self.error, self.since = "ok", None, None


def _trouble(context: sa.engine.ExceptionContext) -> str | None:
    """``unwritable``, ``unreachable``, or None for an error that is neither."""
    original = context.original_exception
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate in _UNWRITABLE_SQLSTATES or any(t in str(original) for t in _UNWRITABLE_TEXT):
        return "unwritable"
    dbapi = context.dialect.loaded_dbapi
    if context.is_disconnect or isinstance(original, (dbapi.OperationalError, dbapi.InterfaceError)):
        return "unreachable"
    return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
