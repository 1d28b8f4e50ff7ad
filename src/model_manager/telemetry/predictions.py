"""``PredictionLog``: a sample of predictions, kept by prediction id, joined with true outcomes.

The router logs a sampled share of requests (the model's ``prediction_log_rate``), and each shadow
version's answer to a logged request under the same id. Rows wait in memory and are written by
the periodic flush; each model keeps its newest ``max_rows`` rows. While the registry is
unreachable, at most ``MAX_PENDING_ROWS`` rows wait (past it the oldest are dropped and counted in
``writes_dropped``: the table keeps the newest rows anyway) and are written once when it is back.
Outcomes (the true label or number, known later) are written onto the rows of their prediction
id, and every version, served or shadow, is scored on them: accuracy for labels, MAE and RMSE for
numbers.

Values are stored wrapped in a JSON object (``{"value": ...}``): a bare number in a JSON column
may come back as another type on some backends (SQLite reads ``2.0`` as ``2``).

A logged prediction is one value per row of the request: the first label output (integer, boolean
or text), else the argmax of the first float output with two or more columns (a class index),
else the first float output's value (a regression).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa

from model_manager.errors import InvalidInput, NotFound
from model_manager.registry import Registry
from model_manager.registry import schema as t
from model_manager.telemetry.outbox import Outbox
from model_manager.types import Array

MAX_LOGGED_ELEMENTS = 1_000
"""Outputs larger than this are logged as their prediction only."""
MAX_PENDING_ROWS = 20_000
"""Rows kept in memory for the next flush (their outputs are at most 1,000 numbers each)."""


@dataclasses.dataclass(frozen=True)
class LoggedPrediction:
    model: str
    prediction_id: str
    version: int
    role: str
    """``primary`` (it served the request) or ``shadow``."""
    prediction: Any
    outputs: dict[str, Any] | None
    at: float


class PredictionLog:
    def __init__(self, registry: Registry, max_rows: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._registry = registry
        self._max_rows = max_rows
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: collections.deque[LoggedPrediction] = collections.deque(
            maxlen=MAX_PENDING_ROWS)
        self._outbox: Outbox[list[LoggedPrediction]] = Outbox(self._lock, self._write)
        self.writes_dropped = 0
        """Rows dropped unwritten because too many waited for the registry."""

    def record(self, model: str, prediction_id: str, version: int, role: str,
               outputs: Mapping[str, Array]) -> None:
        """Keep one answer for the next flush (cheap: the hot path calls it for sampled requests)."""
        small = sum(np.asarray(a).size for a in outputs.values()) <= MAX_LOGGED_ELEMENTS
        row = LoggedPrediction(model, prediction_id[:128], version, role, prediction_of(outputs),
                               {k: _plain(v) for k, v in outputs.items()} if small else None,
                               self._clock())
        with self._lock:
            if len(self._pending) == self._pending.maxlen:
                self.writes_dropped += 1
            self._pending.append(row)

    def flush(self) -> None:
        """Write pending rows and trim each model to its newest ``max_rows`` (call from a
        thread); rows that could not be written stay for the next flush."""
        self._outbox.flush(self._take)

    def _take(self) -> list[LoggedPrediction] | None:
        pending = list(self._pending)
        self._pending.clear()
        return pending or None

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._outbox.unsent or ())

    def _write(self, batch: str, pending: list[LoggedPrediction]) -> None:
        def insert(conn: sa.Connection) -> None:
            ids = dict(conn.execute(sa.select(t.models.c.name, t.models.c.id)).all())
            rows = [{"model_id": ids[p.model], "prediction_id": p.prediction_id,
                     "version": p.version, "role": p.role, "prediction": {"value": p.prediction},
                     "outputs": p.outputs, "created_at": datetime.fromtimestamp(p.at, UTC)}
                    for p in pending if p.model in ids]
            if rows:
                conn.execute(t.prediction_log.insert(), rows)
            for model_id in {row["model_id"] for row in rows}:
                self._trim(conn, model_id)

        self._registry.write_once(batch, insert)

    def add_outcomes(self, model: str, outcomes: Iterable[tuple[str, Any]]) -> dict[str, int]:
        """Write each true outcome onto the logged rows of its prediction id."""
        self.flush()
        received = matched = 0
        log = t.prediction_log
        with self._registry.writing() as conn:
            model_id = _model_id(conn, model)
            for prediction_id, value in outcomes:
                received += 1
                result = conn.execute(log.update().where(
                    log.c.model_id == model_id, log.c.prediction_id == prediction_id[:128])
                    .values(outcome={"value": value}))
                matched += result.rowcount > 0
        return {"received": received, "matched": matched, "unmatched": received - matched}

    def scores(self, model: str) -> list[dict[str, Any]]:
        """Per version and role: rows logged, rows with an outcome, and the live score."""
        log = t.prediction_log
        with self._registry.engine.connect() as conn:
            model_id = _model_id(conn, model)
            query = (sa.select(log.c.version, log.c.role, log.c.prediction, log.c.outcome)
                     .where(log.c.model_id == model_id))
            groups: dict[tuple[int, str], _Score] = {}
            for row in conn.execute(query):
                outcome = None if row.outcome is None else row.outcome["value"]
                groups.setdefault((row.version, row.role), _Score()).add(
                    row.prediction["value"], outcome)
        with self._lock:
            for p in [*(self._outbox.unsent or ()), *self._pending]:
                if p.model == model:
                    groups.setdefault((p.version, p.role), _Score()).add(p.prediction, None)
        return [{"version": version, "role": role, **groups[version, role].summary()}
                for version, role in sorted(groups)]

    def _trim(self, conn: sa.Connection, model_id: int) -> None:
        log = t.prediction_log
        oldest_kept = conn.execute(
            sa.select(log.c.id).where(log.c.model_id == model_id).order_by(log.c.id.desc())
            .offset(self._max_rows - 1).limit(1)).scalar()
        if oldest_kept is not None:
            conn.execute(log.delete().where(log.c.model_id == model_id, log.c.id < oldest_kept))


@dataclasses.dataclass
class _Score:
    logged: int = 0
    with_outcome: int = 0
    rows: int = 0
    correct: int = 0
    abs_errors: float = 0.0
    squared_errors: float = 0.0
    numeric: int = 0

    def add(self, prediction: Any, outcome: Any) -> None:
        self.logged += 1
        if outcome is None:
            return
        self.with_outcome += 1
        predicted, truth = _rows(prediction), _rows(outcome)
        for p, y in zip(predicted, truth, strict=False):
            self.rows += 1
            if isinstance(p, float) and _is_number(y):
                self.numeric += 1
                self.abs_errors += abs(p - float(y))
                self.squared_errors += (p - float(y)) ** 2
            self.correct += _same(p, y)

    def summary(self) -> dict[str, Any]:
        scored: dict[str, Any] = {"logged": self.logged, "with_outcome": self.with_outcome}
        if self.rows and self.numeric == self.rows:
            scored.update(kind="regression", mae=self.abs_errors / self.rows,
                          rmse=math.sqrt(self.squared_errors / self.rows))
        elif self.rows:
            scored.update(kind="classification", accuracy=self.correct / self.rows)
        return scored


def prediction_of(outputs: Mapping[str, Array]) -> Any:
    """The value one logged prediction keeps (see the module docstring): one per row, a list
    when the request had several rows."""
    arrays = [np.asarray(a) for a in outputs.values()]
    labels = [a for a in arrays if a.dtype.kind != "f"]
    scores = [a for a in arrays if a.dtype.kind == "f" and a.ndim >= 2 and a.shape[-1] >= 2]
    if labels:
        values = labels[0].reshape(labels[0].shape[0] if labels[0].ndim else 1, -1)[:, 0]
    elif scores:
        values = np.argmax(scores[0].reshape(scores[0].shape[0], -1), axis=-1)
    elif arrays:
        values = arrays[0].reshape(arrays[0].shape[0] if arrays[0].ndim else 1, -1)[:, 0]
    else:
        return None
    plain = _plain(values)
    return plain[0] if len(plain) == 1 else plain


def parse_outcomes(body: Any) -> list[tuple[str, Any]]:
    """``[{"id": ..., "value": ...}, ...]`` as (prediction id, value) pairs."""
    if not isinstance(body, list):
        raise InvalidInput('outcomes are a JSON list of {"id": ..., "value": ...}')
    pairs = []
    for item in body:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or "value" not in item:
            raise InvalidInput(f'each outcome is {{"id": "<prediction id>", "value": <label or '
                               f'number>}}, got {str(item)[:80]}')
        value = item["value"]
        if not _is_number(value) and not isinstance(value, (str, bool, list)):
            raise InvalidInput(f"an outcome value is a label, a number or a list of them, got "
                               f"{str(value)[:80]}")
        pairs.append((item["id"], value))
    return pairs


def _plain(array: Array) -> Any:
    values = np.asarray(array)
    if values.dtype.kind in "OSU":
        return [_text(v) for v in values.ravel()] if values.ndim else _text(values.item())
    return values.tolist()


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _rows(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(predicted: Any, truth: Any) -> bool:
    if _is_number(predicted) and _is_number(truth):
        return float(predicted) == float(truth)
    return str(predicted) == str(truth)


def _model_id(conn: sa.Connection, model: str) -> int:
    found = conn.execute(sa.select(t.models.c.id).where(t.models.c.name == model)).scalar()
    if found is None:
        raise NotFound(f"model {model[:80]!r} is not registered")
    return int(found)
