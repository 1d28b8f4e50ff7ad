"""``CacheHistory``: the model cache's loads, failed loads and unloads, in memory.

Prometheus counts loads and evictions; this keeps the latest ones with their times, for the
dashboard's list, and exact counts of each kind per minute of the last hour, for its chart. Both
are bounded, and the counts stay exact however many events the list drops while the cache
thrashes. This process's only: it starts empty.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from model_manager.clock import iso
from model_manager.types import VersionKey

KEPT = 1000
"""Events kept for the list: older ones are dropped first."""
KINDS = ("load", "evict", "unload", "load_failed")
_MINUTE = 60
_MINUTES = 60
"""Minutes counted: the last hour, the current minute included."""


class CacheHistory:
    """A ``CacheHooks``: ``load``, ``load_failed``, ``evict`` (for room) and ``unload`` (idle or
    requested) events, oldest first, and their counts per minute."""

    def __init__(self, clock: Callable[[], float], kept: int = KEPT) -> None:
        self._clock = clock
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=kept)
        self._minutes: dict[int, dict[str, int]] = {}
        """Minute index -> kind -> events, for at most the last ``_MINUTES`` minutes."""

    def events(self) -> list[dict[str, Any]]:
        return list(self._events)

    def per_minute(self, now: float) -> list[dict[str, Any]]:
        """Each minute of the hour that ends at ``now`` with an event: its start and the count of
        every kind, oldest first."""
        last = int(now // _MINUTE)
        return [{"start": iso(minute * _MINUTE), **{kind: counts.get(kind, 0) for kind in KINDS}}
                for minute, counts in sorted(self._minutes.items())
                if last - _MINUTES < minute <= last]

    def on_load(self, key: VersionKey, size: int, seconds: float) -> None:
        self._add("load", key, bytes=size, seconds=round(seconds, 4))

    def on_load_failure(self, key: VersionKey, reason: str) -> None:
        self._add("load_failed", key, reason=reason)

    def on_unload(self, key: VersionKey, reason: str) -> None:
        self._add("evict" if reason == "evicted" else "unload", key, reason=reason)

    def on_crash(self, key: VersionKey, reason: str) -> None:
        self._add("crashed", key, reason=reason)

    def _add(self, event: str, key: VersionKey, **fields: Any) -> None:
        now = self._clock()
        self._events.append({"at": iso(now, "milliseconds"), "event": event, "model": key[0],
                             "version": key[1], **fields})
        self._count(event, int(now // _MINUTE))

    def _count(self, event: str, minute: int) -> None:
        counts = self._minutes.get(minute)
        if counts is None:
            # The hour up to this minute stays; so do no minutes ahead of it (a clock set back).
            for old in [m for m in self._minutes if not minute - _MINUTES < m <= minute]:
                del self._minutes[old]
            counts = self._minutes[minute] = {}
        counts[event] = counts.get(event, 0) + 1
