"""``UsageStore``: daily usage buckets per version in the registry database.

Writers add deltas: a flush merges its counts into the day's row in one transaction, so several
servers sharing the database add up instead of overwriting each other.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from model_manager.registry import schema as t
from model_manager.registry.registry import Registry
from model_manager.telemetry.counts import UsageCounts

UsageKey = tuple[str, int, date]
"""(model, version, UTC day)."""

RETENTION_DAYS = 90


class UsageStore:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def add(self, deltas: dict[UsageKey, UsageCounts], batch: str | None = None) -> None:
        """Merge each delta into its day's row (creating it), and drop rows past retention, in
        one transaction; a ``batch`` id already written is not written again."""
        self._registry.write_once(batch or uuid.uuid4().hex,
                                  lambda conn: self._merge_all(conn, deltas))

    def _merge_all(self, conn: sa.Connection, deltas: dict[UsageKey, UsageCounts]) -> None:
        ids = dict(conn.execute(sa.select(t.models.c.name, t.models.c.id)).all())
        for (model, version, day), delta in deltas.items():
            if model not in ids:  # deleted since the requests were counted
                continue
            self._merge(conn, ids[model], version, day, delta)
        cutoff = datetime.now(UTC).date() - timedelta(days=RETENTION_DAYS)
        conn.execute(t.usage_daily.delete().where(t.usage_daily.c.day < cutoff))

    def read(self, model: str, since: date) -> dict[tuple[int, date], UsageCounts]:
        """Counts per (version, day) from ``since`` on."""
        u = t.usage_daily
        query = (sa.select(u.c.version, u.c.day, u.c.counts, u.c.first_used, u.c.last_used)
                 .join(t.models, t.models.c.id == u.c.model_id)
                 .where(t.models.c.name == model, u.c.day >= since))
        with self._registry.engine.connect() as conn:
            return {(row.version, row.day): UsageCounts.from_json(
                row.counts, _ts(row.first_used), _ts(row.last_used)) for row in conn.execute(query)}

    def _merge(self, conn: sa.Connection, model_id: int, version: int, day: date,
               delta: UsageCounts) -> None:
        u = t.usage_daily
        where = (u.c.model_id == model_id, u.c.version == version, u.c.day == day)
        row = conn.execute(sa.select(u.c.counts, u.c.first_used, u.c.last_used).where(*where)).first()
        if row is None:
            merged = delta
        else:
            merged = UsageCounts.from_json(row.counts, _ts(row.first_used), _ts(row.last_used))
            merged.merge(delta)
        values = {"counts": merged.to_json(), "first_used": _dt(merged.first_used),
                  "last_used": _dt(merged.last_used)}
        if row is None:
            conn.execute(u.insert().values(model_id=model_id, version=version, day=day, **values))
        else:
            conn.execute(u.update().where(*where).values(**values))


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)
