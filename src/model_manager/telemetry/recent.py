"""``RecentUsage``: the last hour by minute and the last day by hour, per version, in memory.

The registry keeps usage by day; the dashboard's charts and the fleet's "last hour, last day"
figures need finer buckets than that. These are this process's counts: they start empty at
start-up and, with several replicas, count only the requests this replica served. Each version
holds at most about 60 minute and 24 hour buckets, each made on the first request in it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from model_manager.telemetry.counts import ERROR_KINDS, UsageCounts
from model_manager.types import VersionKey


@dataclasses.dataclass(frozen=True)
class Span:
    step: int
    """Seconds per bucket."""
    buckets: int

    def first(self, now: float) -> int:
        """The index of the oldest bucket in the span that ends at ``now``."""
        return int(now // self.step) - self.buckets + 1


_MINUTE, _HOUR = 60, 3600
SPANS = {"hour": Span(_MINUTE, 60), "day": Span(_HOUR, 24)}

Series = list[tuple[float, UsageCounts]]
"""(bucket start in seconds since the epoch, counts), oldest first, only buckets with requests."""


class RecentUsage:
    """Not thread-safe: ``UsageRecorder`` calls it under its lock.

    A request adds to its minute's bucket only; minutes that leave the hour are rolled up into
    their hours when the next minute's bucket is made, so the hot path does one addition."""

    def __init__(self) -> None:
        self._minutes: dict[VersionKey, dict[int, UsageCounts]] = {}
        self._hours: dict[VersionKey, dict[int, UsageCounts]] = {}
        """Minutes older than the hour, added up by hour."""

    def add(self, key: VersionKey, outcome: str, seconds: float, inference: float | None,
            at: float) -> None:
        minutes = self._minutes.get(key)
        if minutes is None:
            minutes = self._minutes[key] = {}
        index = int(at // _MINUTE)
        counts = minutes.get(index)
        if counts is None:
            counts = minutes[index] = UsageCounts()
            self._roll_up(key, at)
        counts.add(outcome, seconds, inference, at)

    def series(self, key: VersionKey, span: str, now: float) -> Series:
        """Copies of the version's buckets in the span that ends at ``now``."""
        step, first, last = SPANS[span].step, SPANS[span].first(now), int(now // SPANS[span].step)
        buckets: dict[int, UsageCounts] = {}
        if span == "day":
            for hour, counts in self._hours.get(key, {}).items():
                buckets[hour] = UsageCounts().merge(counts)
        for minute, counts in self._minutes.get(key, {}).items():
            index = minute * _MINUTE // step
            buckets[index] = buckets.get(index, UsageCounts()).merge(counts)
        return [(index * step, buckets[index]) for index in sorted(buckets) if first <= index <= last]

    def versions(self, now: float) -> list[VersionKey]:
        """The versions with requests in the last day; those without are forgotten."""
        first = SPANS["day"].first(now) * _HOUR // _MINUTE
        for key in list(self._minutes):
            if max(self._minutes[key], default=-1) < first:
                self._minutes.pop(key)
                self._hours.pop(key, None)
        return sorted(self._minutes)

    def _roll_up(self, key: VersionKey, now: float) -> None:
        minutes, hours = self._minutes[key], self._hours.setdefault(key, {})
        first_minute, first_hour = SPANS["hour"].first(now), SPANS["day"].first(now)
        for minute in [m for m in minutes if m < first_minute]:
            hours.setdefault(minute * _MINUTE // _HOUR, UsageCounts()).merge(minutes.pop(minute))
        for hour in [h for h in hours if h < first_hour]:
            del hours[hour]


def total(series: Series) -> UsageCounts:
    merged = UsageCounts()
    for _, counts in series:
        merged.merge(counts)
    return merged


def recent_report(model: str, span: str, now: float,
                  by_version: dict[int, Series]) -> dict[str, Any]:
    """The JSON of ``GET /api/models/{name}/usage/recent``: every version, used or not."""
    first = SPANS[span].first(now) * SPANS[span].step
    return {"model": model, "span": span, "step_seconds": SPANS[span].step,
            "since": _iso(first), "until": _iso(now), "error_kinds": list(ERROR_KINDS),
            "versions": [{"version": number, **total(series).summary(),
                          "buckets": [{"start": _iso(start), **counts.summary()}
                                      for start, counts in series]}
                         for number, series in sorted(by_version.items())]}


def fleet_report(now: float, hour: dict[VersionKey, Series],
                 day: dict[VersionKey, Series]) -> dict[str, Any]:
    """The JSON of ``GET /api/usage/recent``: each model used in the last day, its totals over
    the last hour and day, and each of its versions'."""
    models: dict[str, list[VersionKey]] = {}
    for key in sorted(day):
        models.setdefault(key[0], []).append(key)
    return {"until": _iso(now), "models": [{
        "model": name, **_spans(_joined(hour, keys), _joined(day, keys)),
        "versions": [{"version": key[1], **_spans(hour.get(key, []), day[key])} for key in keys],
    } for name, keys in models.items()]}


def _spans(hour: Series, day: Series) -> dict[str, Any]:
    return {"hour": total(hour).summary(), "day": total(day).summary()}


def _joined(by_key: dict[VersionKey, Series], keys: Iterable[VersionKey]) -> Series:
    return [bucket for key in keys for bucket in by_key.get(key, [])]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
