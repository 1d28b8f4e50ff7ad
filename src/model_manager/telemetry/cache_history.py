"""``CacheHistory``: the model cache's latest loads, failed loads and unloads, in memory.

Prometheus counts loads and evictions; this keeps each one with its time, so that the dashboard
can draw them over time and list the latest. This process's only: it starts empty.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from model_manager.types import VersionKey

KEPT = 1000
"""Events kept: older ones are dropped first."""


class CacheHistory:
    """A ``CacheHooks``: ``load``, ``load_failed``, ``evict`` (for room) and ``unload`` (idle or
    requested) events, oldest first."""

    def __init__(self, clock: Callable[[], float], kept: int = KEPT) -> None:
        self._clock = clock
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=kept)

    def events(self) -> list[dict[str, Any]]:
        return list(self._events)

    def on_load(self, key: VersionKey, size: int, seconds: float) -> None:
        self._add("load", key, bytes=size, seconds=round(seconds, 4))

    def on_load_failure(self, key: VersionKey, reason: str) -> None:
        self._add("load_failed", key, reason=reason)

    def on_unload(self, key: VersionKey, reason: str) -> None:
        self._add("evict" if reason == "evicted" else "unload", key, reason=reason)

    def _add(self, event: str, key: VersionKey, **fields: Any) -> None:
        at = datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="milliseconds")
        self._events.append({"at": at, "event": event, "model": key[0], "version": key[1],
                             **fields})
