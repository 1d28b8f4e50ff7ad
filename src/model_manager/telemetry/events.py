"""``EventLog``: one JSON line per lifecycle event on stdout, for log shippers to alarm on.

Events: upload, load, load_failed, evict, unload, alias_change, pin, probe_failed, error_burst.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from model_manager.types import VersionKey

_LOGGER = "model_manager.events"


class EventLog:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._log = logging.getLogger(_LOGGER)
        self._log.propagate = False  # these lines are already structured: no second, text copy
        self._log.setLevel(logging.INFO)
        if not self._log.handlers:
            handler = logging.StreamHandler(stream or sys.stdout)
            handler.setFormatter(logging.Formatter("%(message)s"))
            self._log.addHandler(handler)

    def emit(self, event: str, **fields: Any) -> None:
        record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event,
                  **fields}
        self._log.info(json.dumps(record, default=str))

    # CacheHooks: the cache's lifecycle as events

    def on_load(self, key: VersionKey, size: int, seconds: float) -> None:
        self.emit("load", model=key[0], version=key[1], bytes=size, seconds=round(seconds, 4))

    def on_load_failure(self, key: VersionKey, reason: str) -> None:
        self.emit("load_failed", model=key[0], version=key[1], reason=reason)

    def on_unload(self, key: VersionKey, reason: str) -> None:
        self.emit("evict" if reason == "evicted" else "unload", model=key[0], version=key[1],
                  reason=reason)
