"""``UsageCounts``: requests, outcomes and latency histograms that add up across time and replicas.

Latencies go into fixed geometric buckets (each 25% wider than the last, 100 µs to 60 s), so
counts from different days, flushes or servers merge by addition and quantiles are estimated to
within about a bucket's width.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import Any, TypeVar

import numpy as np

OUTCOMES = ("ok", "bad_input", "runtime_error", "timeout", "invalid_output", "overloaded",
            "unavailable")
ERROR_KINDS = OUTCOMES[1:]
P = TypeVar("P", int, date)


def _bounds(low: float = 1e-4, high: float = 60.0, factor: float = 1.25) -> tuple[float, ...]:
    bounds = [low]
    while bounds[-1] < high:
        bounds.append(bounds[-1] * factor)
    return tuple(bounds)


BOUNDS = _bounds()
"""Upper bounds in seconds of the latency buckets; one more bucket holds everything slower."""


def bucket_of(seconds: float) -> int:
    return bisect.bisect_left(BOUNDS, seconds)


def add_to_histogram(histogram: list[int], bounds: Sequence[float],
                     seconds: Sequence[float]) -> None:
    """Count each of ``seconds`` in its bucket of ``histogram``: the first whose upper bound in
    ``bounds`` it does not pass, or the last, past every bound. Many at once take one search."""
    if len(seconds) == 1:
        histogram[bisect.bisect_left(bounds, seconds[0])] += 1
    elif seconds:
        found = np.bincount(np.searchsorted(bounds, seconds, side="left"),
                            minlength=len(histogram))
        for index in np.flatnonzero(found).tolist():
            histogram[index] += int(found[index])


def by_period(period_of: Callable[[float], P], seconds: list[float],
              inference: list[float | None], at: list[float]
              ) -> Iterator[tuple[P, list[float], list[float | None], list[float]]]:
    """Requests (the i-th of each list is one, ended at ``at[i]``) split by ``period_of`` their
    end, in period order. A batch of one period, as nearly every batch is, comes back as it is."""
    first, last = period_of(min(at)), period_of(max(at))
    if first == last:
        yield first, seconds, inference, at
        return
    rows: dict[P, list[int]] = {}
    for i, when in enumerate(at):
        rows.setdefault(period_of(when), []).append(i)
    for period in sorted(rows):
        picked = rows[period]
        yield (period, [seconds[i] for i in picked], [inference[i] for i in picked],
               [at[i] for i in picked])


def quantile(histogram: list[int], q: float) -> float | None:
    """The ``q`` quantile in seconds of a latency histogram (a bucket's upper bound), or None
    when it is empty."""
    total = sum(histogram)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for index, n in enumerate(histogram):
        seen += n
        if seen >= rank and n:
            return BOUNDS[min(index, len(BOUNDS) - 1)]
    return BOUNDS[-1]


def sparse(histogram: list[int]) -> dict[str, int]:
    """A histogram as stored: only its non-empty buckets."""
    return {str(i): n for i, n in enumerate(histogram) if n}


@dataclasses.dataclass
class UsageCounts:
    requests: int = 0
    outcomes: dict[str, int] = dataclasses.field(default_factory=dict)
    latency: list[int] = dataclasses.field(default_factory=lambda: [0] * (len(BOUNDS) + 1))
    inference: list[int] = dataclasses.field(default_factory=lambda: [0] * (len(BOUNDS) + 1))
    first_used: float | None = None
    last_used: float | None = None

    def add(self, outcome: str, seconds: float, inference: float | None, at: float) -> None:
        self.requests += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.latency[bucket_of(seconds)] += 1
        if inference is not None:
            self.inference[bucket_of(inference)] += 1
        self.first_used = at if self.first_used is None else min(self.first_used, at)
        self.last_used = at if self.last_used is None else max(self.last_used, at)

    def add_many(self, outcome: str, seconds: Sequence[float], inference: Sequence[float | None],
                 at: Sequence[float]) -> None:
        """``add`` for each request of one outcome at once: the i-th took ``seconds[i]``,
        ``inference[i]`` of them in the model, and ended at ``at[i]``."""
        self.requests += len(seconds)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + len(seconds)
        add_to_histogram(self.latency, BOUNDS, seconds)
        add_to_histogram(self.inference, BOUNDS, [s for s in inference if s is not None])
        first, last = min(at), max(at)
        self.first_used = first if self.first_used is None else min(self.first_used, first)
        self.last_used = last if self.last_used is None else max(self.last_used, last)

    def merge(self, other: UsageCounts) -> UsageCounts:
        self.requests += other.requests
        for outcome, n in other.outcomes.items():
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
        self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]
        self.inference = [a + b for a, b in zip(self.inference, other.inference, strict=True)]
        self.first_used = _earliest(self.first_used, other.first_used)
        self.last_used = _latest(self.last_used, other.last_used)
        return self

    @property
    def errors(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != "ok")

    def quantile(self, q: float, histogram: str = "latency") -> float | None:
        """The ``q`` quantile in seconds (a bucket's upper bound), or None with no data."""
        return quantile(getattr(self, histogram), q)

    def summary(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors,
                "errors_by_kind": {k: self.outcomes.get(k, 0) for k in ERROR_KINDS},
                **{f"p{int(q * 100)}_ms": ms(self.quantile(q)) for q in (0.5, 0.95, 0.99)},
                "inference_p50_ms": ms(self.quantile(0.5, "inference")),
                "inference_p99_ms": ms(self.quantile(0.99, "inference"))}

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "outcomes": self.outcomes,
                "latency": sparse(self.latency), "inference": sparse(self.inference)}

    @classmethod
    def from_json(cls, data: dict[str, Any], first_used: float | None = None,
                  last_used: float | None = None) -> UsageCounts:
        counts = cls(requests=int(data.get("requests", 0)), outcomes=dict(data.get("outcomes", {})),
                     first_used=first_used, last_used=last_used)
        for index, n in data.get("latency", {}).items():
            counts.latency[int(index)] = n
        for index, n in data.get("inference", {}).items():
            counts.inference[int(index)] = n
        return counts


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)
