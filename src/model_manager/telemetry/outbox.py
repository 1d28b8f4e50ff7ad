"""``Outbox``: telemetry written behind, exactly once, through registry outages.

A recorder (usage, shadow comparisons, the prediction log, audit events) gathers in memory, and
its periodic ``flush`` hands what it gathered to its outbox. The outbox gives each batch a random
id and keeps it, unsent, until the registry confirms the write; a write that failed (the database
unreachable, or the answer to its commit lost) is sent again with the same id, and the registry
writes an id once (``Registry.write_once``). Recorders read the unsent batch as well as what they
gather, so nothing is missing from their reports meanwhile; each recorder says how it bounds what
it holds.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Outbox(Generic[T]):
    def __init__(self, lock: threading.Lock, write: Callable[[str, T], None]) -> None:
        """``lock`` is the recorder's (held while a batch is taken or dropped); ``write`` writes
        one batch under its id, once."""
        self._lock = lock
        self._write = write
        self._flushing = threading.Lock()
        self._id = ""
        self.unsent: T | None = None
        """The batch handed over and not yet confirmed written (read it under ``lock``)."""

    def flush(self, take: Callable[[], T | None]) -> None:
        """Write the unsent batch, if any, then what ``take`` hands over (called under the
        lock; None: nothing gathered). Raises what the write raised; the batch stays unsent."""
        with self._flushing:  # a flush at shutdown or from a request may meet the periodic one
            for _ in range(2):
                with self._lock:
                    if self.unsent is None:
                        self.unsent, self._id = take(), uuid.uuid4().hex
                    batch, batch_id = self.unsent, self._id
                if batch is None:
                    return
                self._write(batch_id, batch)
                with self._lock:
                    self.unsent = None
