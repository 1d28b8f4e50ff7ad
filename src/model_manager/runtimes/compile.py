"""Compiled scikit-learn: an ONNX twin of an uploaded estimator, served when it answers the same.

skl2onnx converts the estimator with FP64 inputs (so tree thresholds compare exactly as in
scikit-learn); the twin's outputs are renamed and reshaped to the estimator's signature, then
both run on generated rows (and the golden probe's, if any): labels must be equal and numbers
within ``TOLERANCE``. Only then is the twin used; the estimator stays the source of truth.
Every outcome, compiled or not and why, is recorded in the version's metadata (``compiled``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np

from model_manager.runtimes.base import LoadOptions, Runtime
from model_manager.runtimes.onnx import OnnxFormat
from model_manager.runtimes.signature import Signature
from model_manager.types import Array, Tensors

TOLERANCE = 1e-5
CHECK_ROWS = 512


@dataclasses.dataclass(frozen=True)
class Compiled:
    path: Path | None
    """The ONNX twin, when it passed its check."""
    report: dict[str, Any]
    """What goes into the version's metadata under ``compiled``."""


def compile_sklearn(estimator_runtime: Runtime, estimator: Any, workdir: Path,
                    options: LoadOptions, probe_inputs: Tensors | None = None) -> Compiled:
    """Convert and check; never raises for a model that cannot be compiled (the report says why)."""
    signature = estimator_runtime.signature
    if importlib.util.find_spec("skl2onnx") is None:
        return _skipped("skl2onnx is not installed (pip install ml-model-manager[demo])")
    spec = signature.inputs[0]
    if len(signature.inputs) != 1 or spec.datatype != "FP64" or len(spec.shape) != 2:
        return _skipped("only estimators of one FP64 table input are compiled")
    started = time.perf_counter()
    try:
        path = _convert(estimator, spec.name, spec.shape[1], signature, workdir)
        twin = OnnxFormat().load(path, options, signature)
    except Exception as exc:  # skl2onnx raises many kinds for what it cannot convert
        return _skipped(f"conversion failed: {str(exc).splitlines()[0][:200]}")
    try:
        rows = _check_rows(spec.shape[1], probe_inputs, spec.name)
        difference = _compare(estimator_runtime, twin, {spec.name: rows},
                              signature.output_names())
    finally:
        twin.unload()
    if isinstance(difference, str):
        path.unlink(missing_ok=True)
        return _skipped(difference)
    return Compiled(path, {"format": "onnx", "checked_rows": int(rows.shape[0]),
                           "max_abs_diff": difference,
                           "seconds": round(time.perf_counter() - started, 3)})


def _skipped(reason: str) -> Compiled:
    return Compiled(None, {"format": None, "reason": reason})


def _convert(estimator: Any, input_name: str, n_features: int, signature: Signature,
             workdir: Path) -> Path:
    import onnx
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType

    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None
    model = to_onnx(estimator, initial_types=[(input_name, DoubleTensorType([None, n_features]))],
                    options=options, target_opset={"": 17, "ai.onnx.ml": 3})
    graph = model.graph
    outputs = signature.output_names()
    fp64 = {t.name for t in signature.outputs if t.datatype == "FP64"}
    produced = [onnx.ValueInfoProto.FromString(o.SerializeToString()) for o in graph.output]
    if len(produced) != len(outputs):
        raise ValueError(f"the ONNX graph has outputs {[o.name for o in produced]}, the "
                         f"estimator {outputs}")
    del graph.output[:]
    raw = {o.name: f"{o.name}__raw" for o in produced}  # free the names for the final outputs
    for node in graph.node:
        node.input[:] = [raw.get(n, n) for n in node.input]
        node.output[:] = [raw.get(n, n) for n in node.output]
    for old, new in zip(produced, outputs, strict=True):
        source, elem_type = raw[old.name], old.type.tensor_type.elem_type
        if new in fp64 and elem_type == onnx.TensorProto.FLOAT:  # tree ensembles answer in FP32
            graph.node.append(onnx.helper.make_node("Cast", [source], [f"{new}__fp64"],
                                                    to=onnx.TensorProto.DOUBLE))
            source, elem_type = f"{new}__fp64", onnx.TensorProto.DOUBLE
        one_d = new in ("label", "prediction")  # the estimator's are 1-D
        if new == "label" and "probabilities" in outputs and _labels_by_argmax(estimator):
            # scikit-learn picks the first of tied classes; the ONNX classifiers may not
            classes = f"{new}__classes"
            graph.initializer.append(onnx.numpy_helper.from_array(
                np.asarray(estimator.classes_), classes))
            scores = raw[produced[outputs.index("probabilities")].name]
            graph.node.append(onnx.helper.make_node("ArgMax", [scores], [f"{new}__index"],
                                                    axis=1, keepdims=0))
            graph.node.append(onnx.helper.make_node("Gather", [classes, f"{new}__index"], [new]))
        elif one_d:
            flat = f"{new}__shape"
            graph.initializer.append(onnx.numpy_helper.from_array(np.array([-1], np.int64), flat))
            graph.node.append(onnx.helper.make_node("Reshape", [source, flat], [new]))
        else:
            graph.node.append(onnx.helper.make_node("Identity", [source], [new]))
        dims = [None] if one_d else [None, *(d.dim_value or None for d in
                                             old.type.tensor_type.shape.dim[1:])]
        graph.output.append(onnx.helper.make_tensor_value_info(new, elem_type, dims))
    path = workdir / "compiled.onnx"
    onnx.save(model, path)
    return path


def _labels_by_argmax(estimator: Any) -> bool:
    """Whether the estimator's ``predict`` is the class of highest ``predict_proba`` (forests
    and other ensembles that vote), as opposed to, say, a linear model's decision function."""
    from sklearn.ensemble import BaseEnsemble
    from sklearn.tree import BaseDecisionTree

    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return isinstance(final, BaseEnsemble | BaseDecisionTree) and \
        np.asarray(estimator.classes_).dtype.kind in "iub"


def _check_rows(n_features: int, probe_inputs: Tensors | None, name: str) -> Array:
    generated = np.random.default_rng(0).normal(scale=3.0, size=(CHECK_ROWS, n_features))
    if probe_inputs and name in probe_inputs:
        probe = np.asarray(probe_inputs[name], dtype=np.float64).reshape(-1, n_features)
        generated = np.concatenate([probe, generated])
    return generated


def _compare(original: Runtime, twin: Runtime, inputs: Tensors, outputs: list[str]) -> float | str:
    """The largest absolute difference of numeric outputs, or why the twin does not qualify."""
    expected = original.predict(inputs, outputs)
    actual = twin.predict(inputs, outputs)
    worst = 0.0
    for name in outputs:
        want, got = np.asarray(expected[name]), np.asarray(actual[name])
        if want.shape != got.shape:
            return f"output {name!r} has shape {got.shape}, the estimator's {want.shape}"
        if want.dtype.kind == "f":
            diff = float(np.max(np.abs(want.astype(np.float64) - got.astype(np.float64)))) \
                if want.size else 0.0
            if not diff <= TOLERANCE:
                return f"output {name!r} differs by up to {diff:.3g} (tolerance {TOLERANCE:g})"
            worst = max(worst, diff)
        elif not np.array_equal(want.astype(str), got.astype(str)):
            mismatched = int(np.sum(want.astype(str) != got.astype(str)))
            return f"output {name!r} differs on {mismatched} of {want.shape[0]} checked rows"
    return worst
