"""Golden probes: sample inputs with expected outputs, carried in a version's metadata::

    {"probe": {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                           "data": [5.1, 3.5, 1.4, 0.2]}],
               "expected": {"label": [0]}, "tolerance": 1e-6}}

A probe passes when every expected output is within ``tolerance`` (numbers) or equal (labels).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from model_manager.errors import InvalidArtifact
from model_manager.runtimes import DATATYPES, Runtime
from model_manager.types import Array


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    passed: bool
    at: float
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "at": self.at, "detail": self.detail}


@dataclasses.dataclass(frozen=True)
class Probe:
    inputs: dict[str, Array]
    expected: dict[str, Array]
    tolerance: float

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> Probe | None:
        spec = metadata.get("probe")
        if spec is None:
            return None
        try:
            inputs = {i["name"]: np.asarray(i["data"], dtype=DATATYPES[i["datatype"]]).reshape(i["shape"])
                      for i in spec["inputs"]}
            expected = {name: np.asarray(value) for name, value in spec["expected"].items()}
            return cls(inputs, expected, float(spec.get("tolerance", 1e-6)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidArtifact(
                "metadata 'probe' needs 'inputs' (v2 JSON inputs: name, datatype, shape, data), "
                f"'expected' (output name -> values) and optionally 'tolerance': {exc}") from exc

    def run(self, runtime: Runtime, at: float) -> ProbeResult:
        try:
            outputs = runtime.predict(self.inputs, list(self.expected))
        except Exception as exc:  # any failure of the model is a failed probe
            return ProbeResult(False, at, f"the model raised {type(exc).__name__}: {exc}")
        for name, want in self.expected.items():
            got = np.asarray(outputs.get(name))
            problem = _difference(name, got, want, self.tolerance)
            if problem:
                return ProbeResult(False, at, problem)
        return ProbeResult(True, at, "outputs match")


def _difference(name: str, got: Array, want: Array, tolerance: float) -> str | None:
    if got.shape != want.shape:
        return f"output {name!r} has shape {list(got.shape)}, expected {list(want.shape)}"
    if want.dtype.kind in "iufb" and got.dtype.kind in "iufb":
        diff = float(np.max(np.abs(got.astype(float) - want.astype(float)))) if got.size else 0.0
        if not diff <= tolerance:  # NaN compares false: a NaN output fails
            return f"output {name!r} differs from the expected by up to {diff:.6g} (tolerance {tolerance})"
        return None
    if [_text(v) for v in got.ravel()] != [_text(v) for v in want.ravel()]:
        return f"output {name!r} is {got.ravel().tolist()[:5]}, expected {want.ravel().tolist()[:5]}"
    return None


def _text(value: object) -> str:
    """A label as text: BYTES outputs hold bytes, and JSON gives the expected ones as strings."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
