"""``EventLog``: one JSON line per lifecycle event on stdout, for log shippers to alarm on.

Events: upload, load, load_failed, evict, unload, crashed, alias_change, pin, probe_failed,
error_burst.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from model_manager.types import VersionKey


class EventLog:
    """Writes whole lines under a lock, straight to its stream (stdout by default), so events
    from worker threads never interleave and stay separate from the text log."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        """Called with each event and its fields, after it is written (quick, no I/O: the
        notifier queues what owners want to hear of)."""

    def emit(self, event: str, **fields: Any) -> None:
        record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event,
                  **fields}
        line = json.dumps(record, default=str) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()
        for listener in self.listeners:
            listener(event, fields)

    # CacheHooks: the cache's lifecycle as events

    def on_load(self, key: VersionKey, size: int, seconds: float) -> None:
        self.emit("load", model=key[0], version=key[1], bytes=size, seconds=round(seconds, 4))

    def on_load_failure(self, key: VersionKey, reason: str) -> None:
        self.emit("load_failed", model=key[0], version=key[1], reason=reason)

    def on_unload(self, key: VersionKey, reason: str) -> None:
        self.emit("evict" if reason == "evicted" else "unload", model=key[0], version=key[1],
                  reason=reason)

    def on_crash(self, key: VersionKey, reason: str) -> None:
        self.emit("crashed", model=key[0], version=key[1], reason=reason)
