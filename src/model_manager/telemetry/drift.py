"""Input drift: each version's live inputs compared, column by column, with a reference.

A version's reference profile comes from a sample given with it (``PUT .../reference``: an
``.npy``, ``.npz`` or ``.csv`` of inputs, which the version also answers once, for its outputs'
reference), else from its first ``baseline_rows`` rows of live traffic. Columns are the inputs'
features, then the outputs' (``output:label``): a 1-D tensor is one column, a 2-D one a column
per feature (``x[3]``); deeper tensors (images) are left out. A float column is binned by the
reference's deciles, an integer column with few values and a BYTES column by category.

The request path only appends the decoded inputs to a bounded queue (``observe``: no copy, no
binning; a full queue skips the request, and at most ``SAMPLE_ROWS`` rows of a request count).
``digest`` (a worker thread, every second) bins the queued rows into time buckets; the live
profile is the buckets within the health window. For each column: the population stability
index (PSI) and the binned two-sample Kolmogorov-Smirnov statistic against the reference; a
column drifts when its PSI passes the model's threshold (``drift_psi``, default 0.2; and
``drift_ks``, if set), judged once the window holds ``MIN_LIVE_ROWS`` rows.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import itertools
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import sqlalchemy as sa

from model_manager.errors import InvalidInput
from model_manager.registry import Registry
from model_manager.registry import schema as t
from model_manager.types import Array, Tensors, VersionKey

BINS = 10
MAX_COLUMNS = 64
MAX_CATEGORIES = 20
OTHER = "(other)"
SAMPLE_ROWS = 64
PENDING_LIMIT = 256
"""Requests waiting for the next digest (each second) at most: past it, requests are not
profiled. This bounds the digest's work and its hold on the interpreter under any load: at
1,024 a second the logreg's p99 at 8 connections went from 0.5x to 0.9x MLServer's."""
MIN_LIVE_ROWS = 200
BASELINE_ROWS = 1000
BUCKET_SECONDS = 10.0
OUTPUT_PREFIX = "output:"
FIRST_INPUT = "(first input)"
"""Where ``read_reference`` puts an unnamed sample read before the model's inputs are known."""
EPSILON = 1e-4
"""Share given to an empty bin, so that PSI stays finite."""


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    kind: str
    """``numeric`` (``edges`` between bins) or ``categorical`` (``categories`` + other)."""
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def bins(self) -> list[str]:
        if self.kind == "categorical":
            return [*self.categories, OTHER]
        bounds = ["-inf", *(f"{e:.4g}" for e in self.edges), "inf"]
        return [f"[{lo}, {hi})" for lo, hi in itertools.pairwise(bounds)]

    def count(self, values: Array) -> Array:
        """How many of ``values`` fall in each bin."""
        if self.kind == "numeric":
            numbers = np.asarray(values, dtype=np.float64)
            numbers = numbers[np.isfinite(numbers)]
            return np.bincount(np.searchsorted(self.edges, numbers, side="right"),
                               minlength=len(self.edges) + 1)
        index = {c: i for i, c in enumerate(self.categories)}
        counts = np.zeros(len(self.categories) + 1, dtype=np.int64)
        for value in values.tolist():
            counts[index.get(_category(value), len(self.categories))] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "edges": list(self.edges),
                "categories": list(self.categories)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Column:
        return cls(str(data["name"]), str(data["kind"]), tuple(float(e) for e in data["edges"]),
                   tuple(str(c) for c in data["categories"]))

    @classmethod
    def fit(cls, name: str, values: Array) -> Column:
        """Bins for a column, from its reference values."""
        if values.dtype.kind in "iub":
            distinct = np.unique(values)
            if len(distinct) <= MAX_CATEGORIES:
                return cls(name, "categorical", categories=tuple(_category(v) for v in distinct))
        if values.dtype.kind in "iufb":
            numbers = np.asarray(values, dtype=np.float64)
            numbers = numbers[np.isfinite(numbers)]
            if numbers.size == 0:
                return cls(name, "numeric")
            quantiles = np.quantile(numbers, np.linspace(0, 1, BINS + 1)[1:-1])
            return cls(name, "numeric", edges=tuple(float(q) for q in np.unique(quantiles)))
        frequent = collections.Counter(_category(v) for v in values.tolist()).most_common(
            MAX_CATEGORIES)
        return cls(name, "categorical", categories=tuple(sorted(c for c, _ in frequent)))


@dataclasses.dataclass(frozen=True)
class Profile:
    """A reference: each column's bins and counts."""

    columns: tuple[Column, ...]
    counts: tuple[tuple[int, ...], ...]
    rows: int
    source: str
    """``upload`` or ``baseline`` (the version's first requests)."""

    @classmethod
    def build(cls, columns: Mapping[str, Array], source: str) -> Profile:
        fitted = tuple(Column.fit(name, values) for name, values in columns.items())
        counts = tuple(tuple(int(c) for c in column.count(columns[column.name]))
                       for column in fitted)
        rows = max((len(v) for v in columns.values()), default=0)
        return cls(fitted, counts, rows, source)

    def to_json(self) -> dict[str, Any]:
        return {"columns": [c.to_json() for c in self.columns],
                "counts": [list(c) for c in self.counts], "rows": self.rows,
                "source": self.source}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Profile:
        return cls(tuple(Column.from_json(c) for c in data["columns"]),
                   tuple(tuple(int(n) for n in c) for c in data["counts"]), int(data["rows"]),
                   str(data["source"]))


def columns_of(inputs: Tensors, limit_rows: int | None = SAMPLE_ROWS) -> dict[str, Array]:
    """The inputs' columns, by name (at most ``MAX_COLUMNS``, of at most ``limit_rows`` rows
    each): views, never copies."""
    columns: dict[str, Array] = {}
    for name, array in inputs.items():
        rows = array[:limit_rows] if limit_rows is not None else array
        if rows.ndim == 1:
            columns[name] = rows
        elif rows.ndim == 2:
            for j in range(min(rows.shape[1], MAX_COLUMNS - len(columns))):
                columns[f"{name}[{j}]"] = rows[:, j]
        if len(columns) >= MAX_COLUMNS:
            break
    return columns


def all_columns(inputs: Tensors, outputs: Tensors,
                limit_rows: int | None = SAMPLE_ROWS) -> dict[str, Array]:
    """The inputs' columns, then the outputs' (named ``output:NAME``)."""
    columns = columns_of(inputs, limit_rows)
    for name, values in columns_of(outputs, limit_rows).items():
        if len(columns) < MAX_COLUMNS:
            columns[OUTPUT_PREFIX + name] = values
    return columns


def _described(column: str) -> str:
    if column.startswith(OUTPUT_PREFIX):
        return f"output {column[len(OUTPUT_PREFIX):]}"
    return f"input {column}"


def read_reference(data: bytes, filename: str, first_input: str) -> dict[str, Array]:
    """A reference sample's inputs: an ``.npz`` holds one array per input, by name; an ``.npy``
    array, or a ``.csv`` of numbers (one row per sample, after a header line), is the model's
    first input."""
    suffix = filename.lower().rsplit(".", 1)[-1]
    try:
        if suffix == "npy":
            return {first_input: np.load(io.BytesIO(data), allow_pickle=False)}
        if suffix == "npz":
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        if suffix == "csv":
            table = np.loadtxt(io.StringIO(data.decode("utf-8")), delimiter=",", skiprows=1,
                               ndmin=2)
            return {first_input: table}
    except (ValueError, OSError, UnicodeDecodeError, KeyError) as exc:
        raise InvalidInput(f"the reference sample {filename!r} cannot be read: {exc}") from None
    raise InvalidInput(f"a reference sample is an .npy, .npz or .csv file, not {filename!r}")


def psi(reference: Array, live: Array) -> float:
    expected = np.maximum(reference / max(reference.sum(), 1), EPSILON)
    actual = np.maximum(live / max(live.sum(), 1), EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks(reference: Array, live: Array) -> float:
    """The two-sample Kolmogorov-Smirnov statistic over the bins: the largest gap between the
    cumulative shares."""
    return float(np.max(np.abs(np.cumsum(reference) / max(reference.sum(), 1)
                               - np.cumsum(live) / max(live.sum(), 1)), initial=0.0))


@dataclasses.dataclass(frozen=True)
class Thresholds:
    psi: float = 0.2
    ks: float | None = None


class _Version:
    """One version's reference (or the rows gathered towards its baseline) and live counts: per
    time bucket, and their running sum over the buckets still in the window."""

    def __init__(self) -> None:
        self.reference: Profile | None = None
        self.looked_up = False
        self.baseline: dict[str, list[Array]] = collections.defaultdict(list)
        self.baseline_rows = 0
        self.buckets: dict[int, tuple[list[Array], int]] = {}
        """Per bucket: each column's counts, and the rows counted."""
        self.live: list[Array] = []
        """Each column's counts over ``buckets``."""
        self.live_rows = 0
        self.drifted: dict[str, str] = {}
        """The drifted columns at the last digest, each with its finding."""

    def add(self, bucket: int, counts: list[Array], rows: int) -> None:
        held = self.buckets.get(bucket)
        if held is None:
            self.buckets[bucket] = ([c.copy() for c in counts], rows)
        else:
            for total, more in zip(held[0], counts, strict=True):
                np.add(total, more, out=total)
            self.buckets[bucket] = (held[0], held[1] + rows)
        if not self.live:
            self.live = [np.zeros(len(c), dtype=np.int64) for c in counts]
        for total, more in zip(self.live, counts, strict=True):
            np.add(total, more, out=total)
        self.live_rows += rows

    def forget_before(self, oldest: int) -> None:
        for bucket in [b for b in self.buckets if b < oldest]:  # in any order: clocks step back
            counts, rows = self.buckets.pop(bucket)
            for total, gone in zip(self.live, counts, strict=True):
                np.subtract(total, gone, out=total)
            self.live_rows -= rows


class DriftMonitor:
    def __init__(self, load: Callable[[VersionKey], Profile | None],
                 save: Callable[[VersionKey, Profile], None],
                 thresholds: Callable[[str], Thresholds], window: float,
                 on_drift: Callable[[VersionKey, str], None],
                 publish: Callable[[VersionKey, str, float], None],
                 baseline_rows: int = BASELINE_ROWS,
                 clock: Callable[[], float] = time.time) -> None:
        self._load = load
        self._save = save
        self._thresholds = thresholds
        self._window = window
        self._on_drift = on_drift
        self._publish = publish
        self._baseline_rows = baseline_rows
        self._clock = clock
        self._pending: collections.deque[tuple[VersionKey, float, Tensors, Tensors]] = \
            collections.deque()
        self._versions: dict[VersionKey, _Version] = {}
        self._lock = threading.RLock()
        """Held by the digest and by readers of the profiles."""
        self.skipped = 0
        """Requests not looked at because the queue was full."""
        self._skipped: collections.Counter[VersionKey] = collections.Counter()

    def observe(self, key: VersionKey, inputs: Tensors, outputs: Tensors | None = None) -> None:
        """The request path: queue the decoded inputs and the outputs (no copy, no work)."""
        if len(self._pending) >= PENDING_LIMIT:
            self.skipped += 1
            self._skipped[key] += 1
            return
        self._pending.append((key, self._clock(), inputs, outputs or {}))

    def set_reference(self, key: VersionKey, inputs: Mapping[str, Array],
                      outputs: Mapping[str, Array] | None = None) -> Profile:
        """Profile an uploaded sample (and the version's outputs for it) as the version's
        reference, store it, use it now (blocking)."""
        if not inputs or not any(len(v) for v in inputs.values()):
            raise InvalidInput("the reference sample holds no rows")
        profile = Profile.build(all_columns(dict(inputs), dict(outputs or {}), None), "upload")
        self._save(key, profile)
        with self._lock:
            state = self._versions.setdefault(key, _Version())
            state.reference, state.looked_up = profile, True
            state.baseline.clear()
            state.drifted.clear()
        return profile

    def digest(self) -> None:
        """Bin what was queued, make baselines that are complete, judge drift (blocking)."""
        with self._lock:
            self._digest(self._clock())

    def _digest(self, now: float) -> None:
        # The queued requests' tensors are stacked per version and bucket, then cut into
        # columns and binned once: a few array operations per second, not per request.
        groups: dict[tuple[VersionKey, int], list[tuple[Tensors, Tensors]]] = {}
        while self._pending:
            key, at, inputs, outputs = self._pending.popleft()
            state = self._versions.setdefault(key, _Version())
            if not state.looked_up:
                state.reference, state.looked_up = self._load(key), True
            if state.reference is None:
                self._gather_baseline(key, state, all_columns(inputs, outputs))
                continue
            groups.setdefault((key, int(at // BUCKET_SECONDS)), []).append((inputs, outputs))
        for (key, bucket), requests in groups.items():
            state = self._versions[key]
            assert state.reference is not None
            columns, rows = _stacked_columns(requests)
            state.add(bucket, self._count(state.reference, columns), rows)
        for key in list(self._versions):
            self._judge(key, now)

    def report(self, key: VersionKey) -> dict[str, Any]:
        """Each column's statistics, threshold and verdict for one version."""
        with self._lock:
            return self._report(key, self._clock())

    def _report(self, key: VersionKey, now: float) -> dict[str, Any]:
        state = self._versions.get(key)
        if state is None or state.reference is None:
            gathered = 0 if state is None else state.baseline_rows
            return {"version": key[1], "reference": None, "baseline_rows": gathered,
                    "baseline_target": self._baseline_rows, "live_rows": 0,
                    "skipped_requests": self._skipped[key], "columns": []}
        live, rows = self._live(state, now)
        limits = self._thresholds(key[0])
        columns: list[dict[str, Any]] = []
        for i, column in enumerate(state.reference.columns):
            reference = np.asarray(state.reference.counts[i], dtype=np.float64)
            psi_value, ks_value = (psi(reference, live[i]), ks(reference, live[i])) \
                if rows else (None, None)
            columns.append({
                "column": column.name, "kind": column.kind, "bins": column.bins,
                "psi": None if psi_value is None else round(psi_value, 4),
                "ks": None if ks_value is None else round(ks_value, 4),
                "psi_threshold": limits.psi, "ks_threshold": limits.ks,
                "drifted": column.name in state.drifted,
                "reference": list(state.reference.counts[i]), "live": [int(n) for n in live[i]]})
        columns.sort(key=lambda c: -(c["psi"] or 0.0))
        return {"version": key[1],
                "reference": {"rows": state.reference.rows, "source": state.reference.source},
                "live_rows": rows, "skipped_requests": self._skipped[key],
                "window_seconds": self._window,
                "judged": rows >= MIN_LIVE_ROWS, "columns": columns}

    def reasons(self, key: VersionKey) -> list[str]:
        """Health findings: the drifted columns, with their PSI."""
        with self._lock:
            state = self._versions.get(key)
            return list(state.drifted.values()) if state is not None else []

    def forget(self, key: VersionKey) -> None:
        with self._lock:
            self._versions.pop(key, None)

    def _count(self, reference: Profile, columns: Mapping[str, Array]) -> list[Array]:
        counts = []
        for column in reference.columns:
            values = columns.get(column.name)
            counts.append(column.count(values) if values is not None
                          else np.zeros(len(column.bins), dtype=np.int64))
        return counts

    def _gather_baseline(self, key: VersionKey, state: _Version,
                         columns: Mapping[str, Array]) -> None:
        for name, values in columns.items():
            state.baseline[name].append(np.array(values))  # a copy: the request's arrays go
        state.baseline_rows += max((len(v) for v in columns.values()), default=0)
        if state.baseline_rows >= self._baseline_rows:
            gathered = {name: np.concatenate(parts) for name, parts in state.baseline.items()}
            profile = Profile.build(gathered, "baseline")
            self._save(key, profile)
            state.reference = profile
            state.baseline.clear()

    def _live(self, state: _Version, now: float) -> tuple[list[Array], int]:
        state.forget_before(int((now - self._window) // BUCKET_SECONDS))
        assert state.reference is not None
        if not state.live:
            return [np.zeros(len(c.bins), dtype=np.int64) for c in state.reference.columns], 0
        return state.live, state.live_rows

    def _judge(self, key: VersionKey, now: float) -> None:
        state = self._versions[key]
        if state.reference is None:
            return
        live, rows = self._live(state, now)
        limits = self._thresholds(key[0])
        drifted = {}
        for i, column in enumerate(state.reference.columns):
            reference = np.asarray(state.reference.counts[i], dtype=np.float64)
            score = psi(reference, live[i]) if rows else 0.0
            self._publish(key, column.name, score)
            if rows >= MIN_LIVE_ROWS and (score > limits.psi or (
                    limits.ks is not None and ks(reference, live[i]) > limits.ks)):
                drifted[column.name] = (f"{_described(column.name)} drifted: PSI {score:.2f} > "
                                        f"{limits.psi:.2f}")
        for name in sorted(drifted.keys() - state.drifted.keys()):
            self._on_drift(key, drifted[name])
        state.drifted = drifted


def _stacked_columns(requests: list[tuple[Tensors, Tensors]]) -> tuple[dict[str, Array], int]:
    """The columns of many requests' inputs and outputs (``SAMPLE_ROWS`` rows of each), and the
    rows they hold. Tensors are stacked by name first; requests whose tensors do not stack (other
    trailing dimensions, other names) are cut into columns one by one."""
    try:
        inputs = _stacked([r[0] for r in requests])
        outputs = _stacked([r[1] for r in requests])
    except ValueError:
        parts: dict[str, list[Array]] = {}
        rows = 0
        for request_inputs, request_outputs in requests:
            columns = all_columns(request_inputs, request_outputs)
            for name, values in columns.items():
                parts.setdefault(name, []).append(values)
            rows += max((len(v) for v in columns.values()), default=0)
        return {name: np.concatenate(values) for name, values in parts.items()}, rows
    columns = all_columns(inputs, outputs, None)
    return columns, max((len(v) for v in columns.values()), default=0)


def _stacked(tensors: list[Tensors]) -> Tensors:
    """Each name's arrays (their first ``SAMPLE_ROWS`` rows) joined along the rows; ValueError
    when the requests do not all hold the same names or their arrays do not join."""
    names = list(tensors[0])
    if any(list(t) != names for t in tensors):
        raise ValueError("the requests' tensors differ")
    stacked = {}
    for name in names:
        arrays = [t[name][:SAMPLE_ROWS] for t in tensors]
        if any(a.ndim == 0 for a in arrays):
            raise ValueError("a scalar tensor")
        stacked[name] = np.concatenate(arrays)
    return stacked


def _category(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return str(value)[:64]


class ReferenceStore:
    """Reference profiles in the registry's ``drift_references`` table."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def load(self, key: VersionKey) -> Profile | None:
        table = t.drift_references
        with self._registry.engine.connect() as conn:
            row = conn.execute(sa.select(table.c.profile).where(
                table.c.model == key[0], table.c.version == key[1])).first()
        return None if row is None else Profile.from_json(row.profile)

    def save(self, key: VersionKey, profile: Profile) -> None:
        table = t.drift_references
        with self._registry.writing() as conn:
            conn.execute(table.delete().where(table.c.model == key[0], table.c.version == key[1]))
            conn.execute(table.insert().values(model=key[0], version=key[1], source=profile.source,
                                               rows=profile.rows, profile=profile.to_json(),
                                               created_at=self._registry.now()))
