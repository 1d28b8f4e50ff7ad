"""Inputs checked against the signature before a model runs; outputs typed after."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from model_manager.errors import InvalidArtifact, InvalidInput, InvalidOutput, SignatureMismatch
from model_manager.runtimes.signature import DATATYPES, Signature, TensorSpec
from model_manager.serving.inference import InferenceRequest, InferOutput
from model_manager.types import Array, Tensors

ALLOW_NON_FINITE = "allow_non_finite_inputs"
"""The version metadata key that lets FP inputs hold NaN and infinities."""
_SUMMED_UP_TO = 32
"""Float arrays of at most this many elements are first checked for finiteness by their sum."""


def all_finite(array: Array) -> bool:
    """Whether a floating-point (or complex) array holds no NaN and no infinity.

    A small array (most requests' tensors) is first added up as Python floats, which costs less
    than half of ``isfinite().all()`` there: a NaN or an infinity makes the sum NaN or infinite
    (and Python floats warn of nothing), so a finite sum means every element is finite. Only a
    sum that is not, which may be finite elements overflowing, takes the full check."""
    if array.size <= _SUMMED_UP_TO and array.dtype.kind == "f" \
            and math.isfinite(sum(array.ravel().tolist())):
        return True
    return bool(np.isfinite(array).all())


def check_inputs(signature: Signature, request: InferenceRequest,
                 allow_non_finite: bool = False) -> dict[str, Array]:
    """The request's tensors by name; raises SignatureMismatch naming what does not fit, and
    InvalidInput for a floating-point input holding NaN or infinities (unless
    ``allow_non_finite``): the caller's mistake, never charged to the model."""
    given = {t.name: t for t in request.inputs}
    expected = signature.inputs_by_name
    if given.keys() != expected.keys():
        missing = [name for name in expected if name not in given]
        unknown = [name for name in given if name not in expected]
        raise SignatureMismatch(
            f"the model takes inputs {list(expected)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {unknown}" if unknown else ""))
    inputs = {}
    for name, spec in expected.items():
        tensor = given[name]
        data = tensor.data
        _check_tensor(spec, tensor.datatype, data.shape)
        if not allow_non_finite:
            _check_finite(name, data)
        inputs[name] = data
    return inputs


def _check_finite(name: str, array: Array) -> None:
    """One pass over a float input (``all_finite``); counting runs only when it fails."""
    if array.dtype.kind != "f" or all_finite(array):
        return
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    raise InvalidInput(f"input {name!r} holds {bad} NaN or infinite value(s) of {array.size}; "
                       f"send finite numbers (a version whose metadata says "
                       f"\"{ALLOW_NON_FINITE}\": true takes them)")


def _check_tensor(spec: TensorSpec, datatype: str, shape: tuple[int, ...]) -> None:
    if datatype != spec.datatype:
        raise SignatureMismatch(f"input {spec.name!r} must be {spec.datatype}, got {datatype}")
    if not spec.fits(shape):
        raise SignatureMismatch(f"input {spec.name!r} must have shape {list(spec.shape)} "
                                f"(-1: any size), got {list(shape)}")


def select_outputs(signature: Signature, request: InferenceRequest) -> Sequence[str]:
    """The output names to compute: those requested, else all of the signature's."""
    if not request.outputs:
        return signature.all_outputs
    names = signature.all_outputs
    unknown = [o.name for o in request.outputs if o.name not in names]
    if unknown:
        raise SignatureMismatch(f"the model has no output {unknown}; its outputs are {list(names)}")
    return [o.name for o in request.outputs]


@dataclasses.dataclass(frozen=True)
class Violation:
    category: str
    """``nan`` (NaN or Inf), ``signature`` (shape or datatype), or ``constraint``."""
    message: str


@dataclasses.dataclass(frozen=True)
class OutputRules:
    """A version's output checks, from its metadata's ``validation`` object::

        {"outputs": {"probabilities": {"range": [0, 1], "sums_to_one": true},
                     "label": {"allowed": [0, 1, 2]}},
         "policy": {"nan": "reject", "signature": "reject", "constraints": "flag"}}
    """

    constraints: dict[str, dict[str, Any]]
    policy: dict[str, str]

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> OutputRules:
        spec = metadata.get("validation") or {}
        if not isinstance(spec, dict):
            raise InvalidArtifact("metadata 'validation' must be an object")
        constraints = spec.get("outputs") or {}
        chosen = spec.get("policy") or {}
        if not isinstance(chosen, dict) or not all(isinstance(v, str) for v in chosen.values()):
            raise InvalidArtifact("validation 'policy' maps nan, signature and constraints to "
                                  "reject|flag")
        policy = {**DEFAULT_POLICY, **chosen}
        if not isinstance(constraints, dict) or not all(isinstance(c, dict) for c in constraints.values()):
            raise InvalidArtifact("validation 'outputs' maps output names to constraint objects")
        unknown = {k for c in constraints.values() for k in c} - {"range", "sums_to_one", "allowed",
                                                                  "tolerance"}
        if unknown or set(policy) - set(DEFAULT_POLICY) or set(policy.values()) - {"reject", "flag"}:
            raise InvalidArtifact("validation takes outputs.<name>.{range, sums_to_one, allowed, "
                                  "tolerance} and policy.{nan, signature, constraints} = reject|flag")
        return cls(constraints, policy)

    def rejects(self, violation: Violation) -> bool:
        key = "constraints" if violation.category == "constraint" else violation.category
        return self.policy[key] == "reject"


DEFAULT_POLICY = {"nan": "reject", "signature": "reject", "constraints": "flag"}


def check_outputs(signature: Signature, rules: OutputRules, names: Sequence[str],
                  results: Tensors) -> tuple[list[InferOutput], list[Violation]]:
    """Outputs cast to the signature's datatypes, and what is wrong with them.

    A missing output, or one that cannot take its datatype, cannot be served: InvalidOutput.
    """
    specs = signature.outputs_by_name
    outputs, violations = [], []
    for name in names:
        try:
            raw = results[name]
        except KeyError:
            raise InvalidOutput(f"the model returned no output {name!r}") from None
        if type(raw) is not np.ndarray:
            raw = np.asarray(raw)
        spec = specs[name]
        finite = raw.dtype.kind not in "fc" or all_finite(raw)
        if not finite:
            violations += _non_finite(name, raw)  # before the cast, which hides them in integers
        array = _cast(spec, raw)
        if array is not raw:  # a cast can make infinities (1e300 into FP32) or hide NaN
            was_finite = finite
            finite = array.dtype.kind not in "fc" or all_finite(array)
            if was_finite and not finite:
                violations += _non_finite(name, array)
        if not spec.fits(array.shape):
            violations.append(Violation(
                "signature", f"output {name!r} has shape {list(array.shape)}, the signature "
                             f"says {list(spec.shape)}"))
        constraints = rules.constraints.get(name)
        if constraints:
            violations += _check_constraints(name, array, constraints)
        outputs.append(InferOutput(name, spec.datatype, array, finite))
    return outputs, violations


def _non_finite(name: str, array: Array) -> list[Violation]:
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    return [Violation("nan", f"output {name!r} holds {bad} NaN or infinite value(s) of {array.size}")]


def _check_constraints(name: str, array: Array, constraints: dict[str, Any]) -> list[Violation]:
    found = []
    if "range" in constraints and array.dtype.kind in "iuf":
        low, high = constraints["range"]
        outside = int(np.count_nonzero((array < low) | (array > high)))
        if outside:
            found.append(Violation("constraint", f"output {name!r}: {outside} value(s) outside "
                                                 f"[{low}, {high}]"))
    if constraints.get("sums_to_one") and array.ndim >= 1 and array.dtype.kind == "f":
        tolerance = float(constraints.get("tolerance", 1e-3))
        sums = array.sum(axis=-1)
        off = int(np.count_nonzero(np.abs(sums - 1) > tolerance))
        if off:
            found.append(Violation("constraint", f"output {name!r}: {off} row(s) do not sum to one "
                                                 f"(within {tolerance})"))
    if "allowed" in constraints:
        allowed = [_plain(v) for v in constraints["allowed"]]
        if array.dtype.kind in "biuf":  # numbers compare as numbers: 0.0 is the label 0
            numbers = [a for a in allowed if isinstance(a, int | float)]
            unknown = sorted({str(v) for v in array.ravel()[~np.isin(array.ravel(), numbers)]})
        else:
            unknown = sorted({str(_plain(v)) for v in array.ravel()} - {str(a) for a in allowed})
        if unknown:
            found.append(Violation("constraint", f"output {name!r}: labels {unknown[:5]} are not "
                                                 f"among the allowed {sorted(map(str, allowed))}"))
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value.item() if isinstance(value, np.generic) else value


def _cast(spec: TensorSpec, array: Array) -> Array:
    if spec.datatype == "BYTES":
        return np.asarray(array, dtype=object)
    wanted = DATATYPES[spec.datatype]
    if array.dtype is wanted or array.dtype == wanted:  # (``is``: numpy's own types, at once)
        return array
    try:
        # NaN into an integer was reported as "nan" before the cast, overflow into infinity after
        with np.errstate(invalid="ignore", over="ignore"):
            return np.asarray(array).astype(DATATYPES[spec.datatype], copy=False)
    except (TypeError, ValueError) as exc:
        raise InvalidOutput(f"output {spec.name!r} is not {spec.datatype}: {exc}") from exc
