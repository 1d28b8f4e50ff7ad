"""``RecentUsage``: the last hour by minute and the last day by hour, per version, in memory.

The registry keeps usage by day; the dashboard's charts and the fleet's "last hour, last day"
figures need finer buckets than that. These are this process's counts: they start empty at
start-up and, with several replicas, count only the requests this replica served. Each version
holds at most about 60 minute and 25 hour buckets, each made on the first request in it; a
version with no request in the last day is dropped by ``forget_idle``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from model_manager.clock import iso
from model_manager.telemetry.counts import ERROR_KINDS, UsageCounts, by_period
from model_manager.types import VersionKey


@dataclasses.dataclass(frozen=True)
class Span:
    step: int
    """Seconds per bucket."""
    buckets: int

    def first(self, now: float) -> int:
        """The index of the oldest bucket in the span that ends at ``now``."""
        return self.last(now) - self.buckets + 1

    def last(self, now: float) -> int:
        """The index of the bucket ``now`` is in."""
        return int(now // self.step)


_MINUTE, _HOUR = 60, 3600
SPANS = {"hour": Span(_MINUTE, 60), "day": Span(_HOUR, 25)}
"""``hour``: 60 minutes, the current one included. ``day``: the last 24 hours, from the start of
the hour (the current hour and the 24 before it), so that it covers at least the last 24 hours."""

Series = list[tuple[float, UsageCounts]]
"""(bucket start in seconds since the epoch, counts), oldest first, only buckets with requests."""


@dataclasses.dataclass(frozen=True)
class Totals:
    """One version's (or model's) requests over the ``hour`` and ``day`` spans."""

    hour: UsageCounts = dataclasses.field(default_factory=UsageCounts)
    day: UsageCounts = dataclasses.field(default_factory=UsageCounts)

    def merge(self, other: Totals) -> Totals:
        self.hour.merge(other.hour)
        self.day.merge(other.day)
        return self

    def summary(self) -> dict[str, Any]:
        return {"hour": self.hour.summary(), "day": self.day.summary()}


class RecentUsage:
    """Not thread-safe: ``UsageRecorder`` calls it under its lock.

    A request adds to its minute's bucket only; minutes that leave the hour are rolled up into
    their hours when the next minute's bucket is made, so the hot path does one addition. Reads
    copy only the buckets in the span they ask for."""

    def __init__(self) -> None:
        self._minutes: dict[VersionKey, dict[int, UsageCounts]] = {}
        self._hours: dict[VersionKey, dict[int, UsageCounts]] = {}
        """Minutes older than the hour, added up by hour."""

    def add(self, key: VersionKey, outcome: str, seconds: float, inference: float | None,
            at: float) -> None:
        minutes = self._minutes.get(key)
        if minutes is None:
            minutes = self._minutes[key] = {}
        minute = _minute_of(at)
        counts = minutes.get(minute)
        if counts is None:
            counts = minutes[minute] = UsageCounts()
            self._roll_up(key, at)
        counts.add(outcome, seconds, inference, at)

    def add_many(self, key: VersionKey, outcome: str, seconds: list[float],
                 inference: list[float | None], at: list[float]) -> None:
        """``add`` for each request of one outcome at once (the i-th of each list is one)."""
        minutes = self._minutes.get(key)
        if minutes is None:
            minutes = self._minutes[key] = {}
        for minute, took, inside, ended in by_period(_minute_of, seconds, inference, at):
            counts = minutes.get(minute)
            if counts is None:
                counts = minutes[minute] = UsageCounts()
                self._roll_up(key, max(ended))
            counts.add_many(outcome, took, inside, ended)

    def series(self, key: VersionKey, span: str, now: float) -> Series:
        """Copies of the version's buckets in the span that ends at ``now``."""
        buckets: dict[int, UsageCounts] = {}
        for index, counts in self._within(key, span, now):
            buckets.setdefault(index, UsageCounts()).merge(counts)
        step = SPANS[span].step
        return [(index * step, buckets[index]) for index in sorted(buckets)]

    def totals(self, now: float) -> dict[VersionKey, Totals]:
        """Each version used in the last day, with its totals over the hour and the day that end
        at ``now``: one pass, for the fleet's figures."""
        return {key: Totals(self._total(key, "hour", now), self._total(key, "day", now))
                for key in self.versions(now)}

    def versions(self, now: float, model: str | None = None) -> list[VersionKey]:
        """The versions (of ``model``) with requests in the last day, sorted. Forgets nothing."""
        return sorted(key for key in self._minutes
                      if model in (None, key[0]) and not self._is_idle(key, now))

    def forget_idle(self, now: float) -> None:
        """Drop the buckets of each version with no request in the last day. Nothing else drops
        an idle version's buckets, so call this now and then."""
        for key in [key for key in self._minutes if self._is_idle(key, now)]:
            del self._minutes[key]
            self._hours.pop(key, None)

    def _is_idle(self, key: VersionKey, now: float) -> bool:
        # The newest bucket is always a minute: minutes only leave when a newer one is made.
        first = SPANS["day"].first(now) * _HOUR // _MINUTE
        return max(self._minutes[key], default=-1) < first

    def _total(self, key: VersionKey, span: str, now: float) -> UsageCounts:
        return _sum(counts for _, counts in self._within(key, span, now))

    def _within(self, key: VersionKey, span: str, now: float) -> Iterator[tuple[int, UsageCounts]]:
        """The version's stored buckets in the span that ends at ``now``, each with the index of
        the span's bucket it falls in; a minute's and its hour's may share one."""
        spec = SPANS[span]
        first, last = spec.first(now), spec.last(now)
        if spec.step == _HOUR:
            yield from ((hour, c) for hour, c in self._hours.get(key, {}).items() if first <= hour <= last)
        for minute, counts in self._minutes.get(key, {}).items():
            index = minute * _MINUTE // spec.step
            if first <= index <= last:
                yield index, counts

    def _roll_up(self, key: VersionKey, now: float) -> None:
        minutes, hours = self._minutes[key], self._hours.setdefault(key, {})
        first_minute, first_hour = SPANS["hour"].first(now), SPANS["day"].first(now)
        for minute in [m for m in minutes if m < first_minute]:
            hours.setdefault(minute * _MINUTE // _HOUR, UsageCounts()).merge(minutes.pop(minute))
        for hour in [h for h in hours if h < first_hour]:
            del hours[hour]


def _minute_of(at: float) -> int:
    return int(at // _MINUTE)


def total(series: Series) -> UsageCounts:
    return _sum(counts for _, counts in series)


def _sum(buckets: Iterable[UsageCounts]) -> UsageCounts:
    merged = UsageCounts()
    for counts in buckets:
        merged.merge(counts)
    return merged


def recent_report(model: str, span: str, now: float,
                  by_version: dict[int, Series]) -> dict[str, Any]:
    """The JSON of ``GET /api/models/{name}/usage/recent``: every version, used or not."""
    first = SPANS[span].first(now) * SPANS[span].step
    return {"model": model, "span": span, "step_seconds": SPANS[span].step,
            "since": iso(first), "until": iso(now), "error_kinds": list(ERROR_KINDS),
            "versions": [{"version": number, **total(series).summary(),
                          "buckets": [{"start": iso(start), **counts.summary()}
                                      for start, counts in series]}
                         for number, series in sorted(by_version.items())]}


def fleet_report(now: float, totals: dict[VersionKey, Totals]) -> dict[str, Any]:
    """The JSON of ``GET /api/usage/recent``: each model used in the last day, its totals over
    the last hour and day, and each of its versions'."""
    models: dict[str, list[VersionKey]] = {}
    for key in sorted(totals):
        models.setdefault(key[0], []).append(key)
    return {"until": iso(now), "models": [{
        "model": name, **_joined(totals[key] for key in keys).summary(),
        "versions": [{"version": key[1], **totals[key].summary()} for key in keys],
    } for name, keys in models.items()]}


def _joined(totals: Iterable[Totals]) -> Totals:
    joined = Totals()
    for each in totals:
        joined.merge(each)
    return joined
