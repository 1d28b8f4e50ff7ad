"""Shadow comparison: how a shadow version's outputs and latency differ from the served ones.

``compare`` looks at one request's two sets of outputs; ``PairStats`` adds the results up per
(primary, shadow) pair and day, in sums and latency histograms that merge across flushes and
servers like usage counts do. Agreement is counted per row: labels (integer, boolean or text
outputs) must be equal, and class scores (float outputs of two or more columns) must have the
same argmax. Float outputs also give the absolute differences, element by element.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from model_manager.telemetry.counts import BOUNDS, bucket_of, ms, quantile, sparse
from model_manager.types import Array


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One request's outputs, primary against shadow."""

    rows: int
    """Rows whose labels or argmax could be compared (0: the outputs are all regression values)."""
    agreed: int
    abs_diff_sum: float = 0.0
    abs_diff_count: int = 0
    abs_diff_max: float = 0.0


def compare(primary: Mapping[str, Array], shadow: Mapping[str, Array]) -> Comparison:
    """Compare the outputs both sides produced; an output of another shape disagrees on
    every row."""
    agree: npt.NDArray[np.bool_] | None = None
    diffs: list[Array] = []
    for name in sorted(primary.keys() & shadow.keys()):
        p, s = np.asarray(primary[name]), np.asarray(shadow[name])
        rows = p.shape[0] if p.ndim else 1
        same: npt.NDArray[np.bool_]
        if p.shape != s.shape:
            same = np.zeros(rows, dtype=bool)
        elif _is_numeric(p) and _is_numeric(s):
            diffs.append(np.abs(p.astype(np.float64) - s.astype(np.float64)).ravel())
            if p.ndim < 2 or p.shape[-1] < 2:
                continue  # regression values: differences only
            same = np.asarray(np.argmax(p, axis=-1) == np.argmax(s, axis=-1), dtype=bool)
        else:
            same = np.asarray(np.equal(p, s), dtype=bool)
        same = np.asarray(same.reshape(rows, -1).all(axis=1), dtype=bool)
        if agree is not None and agree.shape != same.shape:  # outputs of unequal row counts
            agree, same = np.array([agree.all()]), np.array([same.all()])
        agree = same if agree is None else agree & same
    diff = np.concatenate(diffs) if diffs else np.zeros(0)
    diff = diff[np.isfinite(diff)]
    return Comparison(rows=0 if agree is None else int(agree.size),
                      agreed=0 if agree is None else int(agree.sum()),
                      abs_diff_sum=float(diff.sum()), abs_diff_count=int(diff.size),
                      abs_diff_max=float(diff.max()) if diff.size else 0.0)


def _is_numeric(array: Array) -> bool:
    return array.dtype.kind == "f"


def _histogram() -> list[int]:
    return [0] * (len(BOUNDS) + 1)


@dataclasses.dataclass
class PairStats:
    """Comparisons of one (primary, shadow) pair, added up."""

    pairs: int = 0
    """Requests both sides answered, and were compared."""
    shadow_errors: int = 0
    dropped: int = 0
    """Shadow requests dropped because the model's shadow queue was full."""
    rows: int = 0
    agreed: int = 0
    abs_diff_sum: float = 0.0
    abs_diff_count: int = 0
    abs_diff_max: float = 0.0
    primary_latency: list[int] = dataclasses.field(default_factory=_histogram)
    shadow_latency: list[int] = dataclasses.field(default_factory=_histogram)

    def add(self, result: Comparison, primary_seconds: float, shadow_seconds: float) -> None:
        self.pairs += 1
        self.rows += result.rows
        self.agreed += result.agreed
        self.abs_diff_sum += result.abs_diff_sum
        self.abs_diff_count += result.abs_diff_count
        self.abs_diff_max = max(self.abs_diff_max, result.abs_diff_max)
        self.primary_latency[bucket_of(primary_seconds)] += 1
        self.shadow_latency[bucket_of(shadow_seconds)] += 1

    def merge(self, other: PairStats) -> PairStats:
        for field in ("pairs", "shadow_errors", "dropped", "rows", "agreed", "abs_diff_sum",
                      "abs_diff_count"):
            setattr(self, field, getattr(self, field) + getattr(other, field))
        self.abs_diff_max = max(self.abs_diff_max, other.abs_diff_max)
        self.primary_latency = [a + b for a, b in zip(self.primary_latency,
                                                      other.primary_latency, strict=True)]
        self.shadow_latency = [a + b for a, b in zip(self.shadow_latency,
                                                     other.shadow_latency, strict=True)]
        return self

    def summary(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs, "shadow_errors": self.shadow_errors, "dropped": self.dropped,
            "rows_compared": self.rows,
            "agreement": round(self.agreed / self.rows, 6) if self.rows else None,
            "mean_abs_diff": self.abs_diff_sum / self.abs_diff_count if self.abs_diff_count
            else None,
            "max_abs_diff": self.abs_diff_max if self.abs_diff_count else None,
            "primary_p50_ms": _quantile_ms(self.primary_latency, 0.5),
            "primary_p99_ms": _quantile_ms(self.primary_latency, 0.99),
            "shadow_p50_ms": _quantile_ms(self.shadow_latency, 0.5),
            "shadow_p99_ms": _quantile_ms(self.shadow_latency, 0.99)}

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["primary_latency"] = sparse(self.primary_latency)
        data["shadow_latency"] = sparse(self.shadow_latency)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairStats:
        stats = cls(**{k: v for k, v in data.items() if not k.endswith("_latency")})
        for side in ("primary_latency", "shadow_latency"):
            for index, n in data.get(side, {}).items():
                getattr(stats, side)[int(index)] = n
        return stats


def _quantile_ms(histogram: list[int], q: float) -> float | None:
    return ms(quantile(histogram, q))
