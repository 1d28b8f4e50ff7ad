"""Inputs checked against the signature before a model runs; outputs typed after."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model_manager.errors import ModelError, SignatureMismatch
from model_manager.runtimes.signature import DATATYPES, Signature, TensorSpec
from model_manager.serving.inference import InferenceRequest, InferOutput
from model_manager.types import Array, Tensors


def check_inputs(signature: Signature, request: InferenceRequest) -> dict[str, Array]:
    """The request's tensors by name; raises SignatureMismatch naming what does not fit."""
    given = {t.name: t for t in request.inputs}
    expected = {spec.name: spec for spec in signature.inputs}
    missing = [name for name in expected if name not in given]
    unknown = [name for name in given if name not in expected]
    if missing or unknown:
        raise SignatureMismatch(
            f"the model takes inputs {list(expected)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {unknown}" if unknown else ""))
    for name, spec in expected.items():
        _check_tensor(spec, given[name].datatype, given[name].data.shape)
    return {name: given[name].data for name in expected}


def _check_tensor(spec: TensorSpec, datatype: str, shape: tuple[int, ...]) -> None:
    if datatype != spec.datatype:
        raise SignatureMismatch(f"input {spec.name!r} must be {spec.datatype}, got {datatype}")
    fits = len(shape) == len(spec.shape) and all(
        want in (-1, got) for want, got in zip(spec.shape, shape, strict=True))
    if not fits:
        raise SignatureMismatch(f"input {spec.name!r} must have shape {list(spec.shape)} "
                                f"(-1: any size), got {list(shape)}")


def select_outputs(signature: Signature, request: InferenceRequest) -> list[str]:
    """The output names to compute: those requested, else all of the signature's."""
    names = signature.output_names()
    if not request.outputs:
        return names
    unknown = [o.name for o in request.outputs if o.name not in names]
    if unknown:
        raise SignatureMismatch(f"the model has no output {unknown}; its outputs are {names}")
    return [o.name for o in request.outputs]


def type_outputs(signature: Signature, names: Sequence[str], results: Tensors) -> list[InferOutput]:
    """Outputs cast to the signature's datatypes; a missing output is the model's fault."""
    specs = {spec.name: spec for spec in signature.outputs}
    outputs = []
    for name in names:
        if name not in results:
            raise ModelError(f"the model returned no output {name!r}")
        outputs.append(InferOutput(name, specs[name].datatype, _cast(specs[name], results[name])))
    return outputs


def _cast(spec: TensorSpec, array: Array) -> Array:
    if spec.datatype == "BYTES":
        return np.asarray(array, dtype=object)
    try:
        return np.asarray(array).astype(DATATYPES[spec.datatype], copy=False)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"output {spec.name!r} is not {spec.datatype}: {exc}") from exc
