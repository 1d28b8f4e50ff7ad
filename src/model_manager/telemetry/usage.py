"""``UsageRecorder``: every prediction counted in memory, flushed to the registry in daily buckets.

A successful prediction costs the hot path one append to a queue: the counts (and, in a
single-process server, the Prometheus request metrics) take what it holds whenever they are read,
scraped or flushed, so every reader sees every request that ended before it asked. A failed one
is counted at once. A background task calls ``flush``
every few seconds and at shutdown, so a crash loses at most one flush interval. While the registry
is unreachable the counts wait in memory and are written, once, when it is back (``Outbox``); they
are bounded by the versions and days counted, not by the requests. A sliding window
of recent requests per version feeds health (error rate, p99) and error-burst events; minute and
hour buckets of the last day (``RecentUsage``) feed the dashboard; each flush also forgets the
buckets of versions idle for a day, so they do not pile up while nobody reads them.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from model_manager import errors
from model_manager.clock import iso
from model_manager.telemetry.counts import ERROR_KINDS, UsageCounts, by_period
from model_manager.telemetry.events import EventLog
from model_manager.telemetry.metrics import Metrics
from model_manager.telemetry.outbox import Outbox
from model_manager.telemetry.recent import RecentUsage, Series, Totals
from model_manager.telemetry.usage_store import UsageKey, UsageStore
from model_manager.types import VersionKey

log = logging.getLogger(__name__)

_WINDOW_CAP = 20_000
_SETTLE_AT = 512
"""A version's successful requests recorded before they are added to the counts without waiting
for a read: about 0.25 ms of work, short enough not to stand out in the tail of the requests
that wait for it."""
_BURST_ERRORS = 10
_BURST_SECONDS = 60.0


NOT_THE_MODELS = frozenset({"ok", "bad_input", "unavailable"})
"""Outcomes that say nothing against the version: health and the canary guard skip them."""
_NOT_JUDGED = frozenset({"bad_input", "unavailable"})


def outcome_of(exc: BaseException) -> str:
    """The error kind a failed prediction counts as."""
    if isinstance(exc, errors.InvalidInput | errors.TooLarge):  # the caller's, not the model's
        return "bad_input"
    if isinstance(exc, errors.Unreachable):  # the registry or the store, not the model
        return "unavailable"
    if isinstance(exc, errors.PredictionTimeout):
        return "timeout"
    if isinstance(exc, errors.InvalidOutput):
        return "invalid_output"
    if isinstance(exc, errors.Overloaded):
        return "overloaded"
    return "runtime_error"


class Tracking:
    """One prediction being counted, as a ``with`` block: its outcome is the exception that
    leaves the block, if any; the router marks inference time and flagged outputs. (A class,
    not a generator context manager: it runs on every request.)"""

    __slots__ = ("_key", "_recorder", "detail", "inference", "outcome", "started")

    def __init__(self, recorder: UsageRecorder, key: VersionKey) -> None:
        self._recorder = recorder
        self._key = key
        self.started = 0.0
        self.inference: float | None = None
        self.outcome = "ok"
        self.detail: str | None = None
        """What was wrong, for a failed or flagged prediction."""

    def __enter__(self) -> Tracking:
        self.started = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: Any) -> None:
        if isinstance(exc, Exception):
            self.outcome = outcome_of(exc)
            self.detail = getattr(exc, "message", str(exc))
        self._recorder.record(self._key, self.outcome, time.perf_counter() - self.started,
                              self.inference, self.detail)


@dataclasses.dataclass(frozen=True)
class WindowStats:
    requests: int
    errors: int
    """Failures that may be the model's: every error kind but bad_input and unavailable."""
    invalid: int
    p99: float | None
    judged: int | None = None
    """Requests that say something of the model: all but bad input and an unreachable
    registry or store (None: all of them). Rates and the guard's minimum count these only, so a
    flood of bad requests neither makes a model look broken nor hides one that is."""

    @property
    def judged_requests(self) -> int:
        return self.requests if self.judged is None else self.judged

    @property
    def error_rate(self) -> float:
        return self.errors / self.judged_requests if self.judged_requests else 0.0

    @property
    def invalid_rate(self) -> float:
        return self.invalid / self.judged_requests if self.judged_requests else 0.0


class UsageRecorder:
    writes_dropped = 0
    """Counts are never dropped: what waits is bounded by the versions and days counted."""

    def __init__(self, store: UsageStore, metrics: Metrics, events: EventLog,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._metrics = metrics
        self._events = events
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[UsageKey, UsageCounts] = {}
        self._outbox: Outbox[dict[UsageKey, UsageCounts]] = Outbox(
            self._lock, lambda batch, pending: store.add(pending, batch))
        self._windows: dict[VersionKey, collections.deque[tuple[float, float, str]]] = {}
        self._bursts: dict[VersionKey, float] = {}
        self._last_errors: dict[VersionKey, dict[str, str]] = {}
        self._recent = RecentUsage()
        self._day: tuple[int, date] = (-1, date.min)
        self._unsettled: dict[VersionKey, collections.deque[tuple[float, float | None, float]]] = {}
        """Each version's successful requests not yet in the counts (``_settle``)."""
        metrics.settle_before_scrape(self._settled)

    def last_error(self, key: VersionKey, outcome: str | None = None) -> str | None:
        """The message of the version's latest server-side error (of one kind, if given)."""
        with self._lock:
            return self._last_errors.get(key, {}).get(outcome or "*")

    def track(self, key: VersionKey) -> Tracking:
        """Count the prediction in the ``with`` block: its outcome from the exception it raises,
        if any."""
        return Tracking(self, key)

    def record(self, key: VersionKey, outcome: str, seconds: float, inference: float | None,
               detail: str | None = None) -> None:
        at = self._clock()
        if outcome == "ok":
            # The request's share: one append. The counts take it when next read or flushed.
            unsettled = self._unsettled.get(key)
            if unsettled is None:
                unsettled = self._unsettled.setdefault(key, collections.deque())
            unsettled.append((seconds, inference, at))
            if len(unsettled) >= _SETTLE_AT:
                with self._lock:
                    self._settle()
            if not self._metrics.takes_batches:  # several workers: the shared files, at once
                self._metrics.on_request(key, outcome, seconds, inference)
            return
        with self._lock:
            self._settle()  # the window keeps the order requests ended in
            self._add(key, outcome, seconds, inference, at)
            if outcome not in NOT_THE_MODELS:
                self._last_errors.setdefault(key, {})[outcome] = detail or outcome
                self._last_errors[key]["*"] = detail or outcome
        self._metrics.on_request(key, outcome, seconds, inference)
        if outcome not in NOT_THE_MODELS:
            self._check_burst(key, at)

    def _settled(self) -> None:
        with self._lock:
            self._settle()

    def _settle(self) -> None:
        """Add the successful requests recorded since the last call to the counts, a version's
        at once (under the lock). ``popleft`` and the hot path's ``append`` are each atomic, so
        a request that ends meanwhile is either taken now or left for the next call."""
        for key, unsettled in list(self._unsettled.items()):
            rows = [unsettled.popleft() for _ in range(len(unsettled))]
            if not rows:
                continue
            seconds, inference, at = (list(column) for column in zip(*rows, strict=True))
            for day, took, inside, ended in by_period(self._day_of, seconds, inference, at):
                self._pending_counts(key, day).add_many("ok", took, inside, ended)
            self._window(key).extend(zip(at, seconds, itertools.repeat("ok")))
            self._recent.add_many(key, "ok", seconds, inference, at)
            if self._metrics.takes_batches:
                self._metrics.on_requests(key, "ok", seconds, inference)

    def _pending_counts(self, key: VersionKey, day: date) -> UsageCounts:
        counts = self._pending.get((key[0], key[1], day))
        if counts is None:
            counts = self._pending[key[0], key[1], day] = UsageCounts()
        return counts

    def _add(self, key: VersionKey, outcome: str, seconds: float, inference: float | None,
             at: float) -> None:
        self._pending_counts(key, self._day_of(at)).add(outcome, seconds, inference, at)
        self._window(key).append((at, seconds, outcome))
        self._recent.add(key, outcome, seconds, inference, at)

    def _window(self, key: VersionKey) -> collections.deque[tuple[float, float, str]]:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = collections.deque(maxlen=_WINDOW_CAP)
        return window

    def _day_of(self, at: float) -> date:
        """The UTC day of ``at``; worked out once a day (Unix days are 86,400 s long)."""
        number = int(at // 86400)
        if number != self._day[0]:
            self._day = (number, datetime.fromtimestamp(at, UTC).date())
        return self._day[1]

    def on_batch(self, key: VersionKey, rows: int) -> None:
        """A dynamically batched prediction of ``rows`` rows ran."""
        self._metrics.on_batch(key, rows)

    def window(self, key: VersionKey, seconds: float) -> WindowStats:
        """Requests in the last ``seconds``: counts, errors, invalid outputs and p99 latency."""
        since = self._clock() - seconds
        with self._lock:
            self._settle()
            recent = [r for r in self._windows.get(key, ()) if r[0] >= since]
        latencies = sorted(r[1] for r in recent)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None
        return WindowStats(len(recent), sum(r[2] not in NOT_THE_MODELS for r in recent),
                           sum(r[2] == "invalid_output" for r in recent), p99,
                           judged=sum(r[2] not in _NOT_JUDGED for r in recent))

    def recent(self, span: str, model: str | None = None) -> tuple[float, dict[VersionKey, Series]]:
        """Now, and this process's buckets of the last ``span`` (``hour`` by minute, ``day`` by
        hour) for each version (of ``model``) used in the last day."""
        now = self._clock()
        with self._lock:
            self._settle()
            keys = self._recent.versions(now, model)
            return now, {key: self._recent.series(key, span, now) for key in keys}

    def recent_totals(self) -> tuple[float, dict[VersionKey, Totals]]:
        """Now, and each version used in the last day with this process's totals over the last
        hour and day, all taken at once."""
        now = self._clock()
        with self._lock:
            self._settle()
            return now, self._recent.totals(now)

    def flush(self) -> None:
        """Write the counts gathered since the last flush, and forget the recent buckets of
        versions idle for a day (blocking: call from a thread). Counts that could not be
        written stay for the next flush."""
        self._outbox.flush(self._take)

    def _take(self) -> dict[UsageKey, UsageCounts] | None:
        self._settle()
        pending, self._pending = self._pending, {}
        self._recent.forget_idle(self._clock())
        return pending or None

    def pending_count(self) -> int:
        """(model, version, day) buckets waiting to be written."""
        with self._lock:
            self._settle()
            return len(self._pending) + len(self._outbox.unsent or ())

    def usage(self, model: str, days: int = 30) -> dict[int, dict[date, UsageCounts]]:
        """Counts per version and day over the last ``days`` days, flushed and pending."""
        since = datetime.fromtimestamp(self._clock(), UTC).date() - timedelta(days=days - 1)
        result: dict[int, dict[date, UsageCounts]] = collections.defaultdict(dict)
        for (version, day), counts in self._store.read(model, since).items():
            result[version][day] = counts
        with self._lock:
            self._settle()
            unwritten = [*(self._outbox.unsent or {}).items(), *self._pending.items()]
            pending = [(k, UsageCounts().merge(c))  # copies, taken under the lock
                       for k, c in unwritten if k[0] == model and k[2] >= since]
        for (_, version, day), counts in pending:
            result[version].setdefault(day, UsageCounts()).merge(counts)
        return dict(result)

    def _check_burst(self, key: VersionKey, at: float) -> None:
        if at - self._bursts.get(key, 0.0) < _BURST_SECONDS:
            return
        stats = self.window(key, _BURST_SECONDS)
        if stats.errors >= _BURST_ERRORS:
            self._bursts[key] = at
            self._events.emit("error_burst", model=key[0], version=key[1], errors=stats.errors,
                              requests=stats.requests, seconds=_BURST_SECONDS)


def usage_report(model: str, numbers: list[int],
                 by_version: dict[int, dict[date, UsageCounts]]) -> dict[str, Any]:
    """The JSON of ``GET /api/models/{name}/usage``: every version, used or not."""
    versions = []
    for number in sorted(set(numbers) | set(by_version)):
        days = by_version.get(number, {})
        total = UsageCounts()
        for counts in days.values():
            total.merge(counts)
        versions.append({
            "version": number, **total.summary(),
            "first_used": iso(total.first_used), "last_used": iso(total.last_used),
            "days": [{"day": day.isoformat(), **days[day].summary()} for day in sorted(days)]})
    return {"model": model, "error_kinds": list(ERROR_KINDS), "versions": versions}

