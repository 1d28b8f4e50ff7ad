"""``ShadowStats``: shadow comparisons per (primary, shadow) pair and day, flushed to the registry.

Like usage counts, comparisons add up in memory and a periodic flush merges them into the day's
row, so several servers sharing a database add up rather than overwrite each other. While the
registry is unreachable they wait in memory (bounded by the pairs and days compared) and are
written once when it is back.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from model_manager.registry import Registry
from model_manager.registry import schema as t
from model_manager.telemetry.comparison import Comparison, PairStats
from model_manager.telemetry.outbox import Outbox

PairKey = tuple[str, int, int, date]
"""(model, primary version, shadow version, UTC day)."""

RETENTION_DAYS = 90


class ShadowStats:
    writes_dropped = 0
    """Comparisons are never dropped: what waits is bounded by the pairs and days compared."""

    def __init__(self, registry: Registry, clock: Callable[[], float] = time.time) -> None:
        self._registry = registry
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[PairKey, PairStats] = {}
        self._outbox: Outbox[dict[PairKey, PairStats]] = Outbox(self._lock, self._write)
        self.dropped: collections.Counter[str] = collections.Counter()
        """Shadow requests dropped per model since the server started."""

    def add(self, model: str, primary: int, shadow: int, result: Comparison | None,
            primary_seconds: float, shadow_seconds: float) -> None:
        """Count one shadow answer: its comparison, or (None) a shadow error."""
        with self._lock:
            stats = self._stats(model, primary, shadow)
            if result is None:
                stats.shadow_errors += 1
            else:
                stats.add(result, primary_seconds, shadow_seconds)

    def drop(self, model: str, primary: int, shadow: int) -> None:
        with self._lock:
            self._stats(model, primary, shadow).dropped += 1
            self.dropped[model] += 1

    def flush(self) -> None:
        """Merge pending comparisons into their day's rows (blocking: call from a thread);
        those that could not be written stay for the next flush."""
        self._outbox.flush(self._take)

    def _take(self) -> dict[PairKey, PairStats] | None:
        pending, self._pending = self._pending, {}
        return pending or None

    def pending_count(self) -> int:
        """(model, primary, shadow, day) buckets waiting to be written."""
        with self._lock:
            return len(self._pending) + len(self._outbox.unsent or ())

    def _write(self, batch: str, pending: dict[PairKey, PairStats]) -> None:
        def merge_all(conn: sa.Connection) -> None:
            ids = dict(conn.execute(sa.select(t.models.c.name, t.models.c.id)).all())
            for (model, primary, shadow, day), delta in pending.items():
                if model in ids:
                    _merge(conn, ids[model], primary, shadow, day, delta)
            cutoff = datetime.now(UTC).date() - timedelta(days=RETENTION_DAYS)
            conn.execute(t.shadow_daily.delete().where(t.shadow_daily.c.day < cutoff))

        self._registry.write_once(batch, merge_all)

    def report(self, model: str, days: int) -> list[dict[str, Any]]:
        """Each pair seen in the last ``days`` days: totals and one entry per day."""
        since = datetime.fromtimestamp(self._clock(), UTC).date() - timedelta(days=days - 1)
        by_pair: dict[tuple[int, int], dict[date, PairStats]] = collections.defaultdict(dict)
        s = t.shadow_daily
        query = (sa.select(s.c.primary_version, s.c.shadow_version, s.c.day, s.c.stats)
                 .join(t.models, t.models.c.id == s.c.model_id)
                 .where(t.models.c.name == model, s.c.day >= since))
        with self._registry.engine.connect() as conn:
            for row in conn.execute(query):
                by_pair[row.primary_version, row.shadow_version][row.day] = (
                    PairStats.from_json(row.stats))
        with self._lock:
            unwritten = [*(self._outbox.unsent or {}).items(), *self._pending.items()]
            for (name, primary, shadow, day), stats in unwritten:
                if name == model and day >= since:
                    by_pair[primary, shadow].setdefault(day, PairStats()).merge(stats)
        report = []
        for (primary, shadow), per_day in sorted(by_pair.items()):
            total = PairStats()
            for stats in per_day.values():
                total.merge(stats)
            report.append({"primary": primary, "shadow": shadow, **total.summary(),
                           "days": [{"day": d.isoformat(), **per_day[d].summary()}
                                    for d in sorted(per_day)]})
        return report

    def _stats(self, model: str, primary: int, shadow: int) -> PairStats:
        day = datetime.fromtimestamp(self._clock(), UTC).date()
        return self._pending.setdefault((model, primary, shadow, day), PairStats())


def _merge(conn: sa.Connection, model_id: int, primary: int, shadow: int, day: date,
           delta: PairStats) -> None:
    s = t.shadow_daily
    where = (s.c.model_id == model_id, s.c.primary_version == primary,
             s.c.shadow_version == shadow, s.c.day == day)
    stored = conn.execute(sa.select(s.c.stats).where(*where)).scalar()
    if stored is None:
        conn.execute(s.insert().values(model_id=model_id, primary_version=primary,
                                       shadow_version=shadow, day=day, stats=delta.to_json()))
    else:
        merged = PairStats.from_json(stored).merge(delta)
        conn.execute(s.update().where(*where).values(stats=merged.to_json()))
