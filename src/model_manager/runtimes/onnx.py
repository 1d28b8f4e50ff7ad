"""ONNX models under onnxruntime. The signature is read from the graph."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_manager.devices import device_index
from model_manager.errors import InvalidArtifact, InvalidInput, ModelError, Unavailable
from model_manager.runtimes.base import LoadOptions
from model_manager.runtimes.signature import Signature, TensorSpec
from model_manager.types import Array, Tensors

_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8", "tensor(int16)": "INT16",
    "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


class OnnxFormat:
    name = "onnx"
    platform = "onnxruntime_onnx"
    suffixes = (".onnx",)
    extra = None
    accelerated = True

    def is_available(self) -> bool:
        return True

    def sniff(self, path: Path, head: bytes) -> bool:
        # A ModelProto starts with field 1 (ir_version), a varint: tag byte 0x08.
        return head[:1] == b"\x08"

    def load(self, path: Path, options: LoadOptions, signature: Signature | None) -> OnnxRuntime:
        session = open_session(path, options, "not a loadable ONNX model")
        return OnnxRuntime(session, _checked(signature, _read_signature(session)))


def open_session(path: Path, options: LoadOptions, refusal: str) -> Any:
    """An onnxruntime session on ``options.device``: the CUDA execution provider for
    ``cuda:N`` (which needs onnxruntime-gpu), else the CPU's. ``refusal`` opens the message of
    a file onnxruntime cannot load."""
    import onnxruntime as ort

    session_options = ort.SessionOptions()
    session_options.log_severity_level = 3
    session_options.intra_op_num_threads = options.threads
    session_options.inter_op_num_threads = 1
    providers = execution_providers(options.device, ort.get_available_providers())
    try:
        session = ort.InferenceSession(str(path), session_options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise InvalidArtifact(f"{refusal}: {_first_line(exc)}") from exc
    if providers[0][0] not in session.get_providers():  # it falls back to the CPU quietly
        raise Unavailable(f"onnxruntime could not start its {providers[0][0]} on "
                          f"{options.device}", retry_after=60)
    return session


def execution_providers(device: str, available: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """The providers for a session on ``device``, from those this onnxruntime has."""
    if device == "cpu":
        return [("CPUExecutionProvider", {})]
    if "CUDAExecutionProvider" not in available:
        raise Unavailable(f"this onnxruntime cannot run models on {device} (it has "
                          f"{', '.join(available)}): install ml-model-manager[gpu], which brings "
                          "onnxruntime-gpu", retry_after=60)
    # The arena grows by what is asked, not to the next power of two: a model's measured device
    # bytes are then what it uses, not up to twice that.
    cuda = {"device_id": str(device_index(device)), "arena_extend_strategy": "kSameAsRequested"}
    return [("CUDAExecutionProvider", cuda), ("CPUExecutionProvider", {})]


class OnnxRuntime:
    def __init__(self, session: Any, signature: Signature) -> None:
        self._session = session
        # The session's own run, without the Python wrapper's per-call work: it checks the
        # feed's names, which the signature check before every prediction has done, and after
        # a device failure it retries on the CPU for good, where a version must stay on the
        # device it was loaded on (a failure is the request's error, as at load).
        self._run = session._sess.run
        self.signature = signature
        self._bytes_inputs = {t.name for t in signature.inputs if t.datatype == "BYTES"}

    def predict(self, inputs: Tensors, outputs: Sequence[str]) -> dict[str, Array]:
        feed = inputs if not self._bytes_inputs else {
            name: (_as_text(name, value) if name in self._bytes_inputs else value)
            for name, value in inputs.items()}
        try:
            results = self._run(outputs, feed, None)
        except Exception as exc:
            raise ModelError(f"onnxruntime failed: {_first_line(exc)}") from exc
        answer = {}
        for name, result in zip(outputs, results, strict=True):  # a loop: no generator to run
            answer[name] = result if type(result) is np.ndarray else np.asarray(result)
        return answer

    def unload(self) -> None:
        self._session = self._run = None


def _as_text(name: str, value: Array) -> Array:
    """ONNX string tensors hold text: BYTES elements must be UTF-8."""
    try:
        return np.vectorize(_decode, otypes=[object])(value) if value.size else value
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"input {name!r}: a BYTES element is not UTF-8 text ({exc})") from exc


def _decode(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _read_signature(session: Any) -> Signature:
    inputs = tuple(_spec(arg) for arg in session.get_inputs())
    # Non-tensor outputs (the ZipMap of a default skl2onnx conversion) cannot travel over v2.
    outputs = tuple(_spec(arg) for arg in session.get_outputs() if arg.type in _ORT_TYPES)
    if None in inputs:
        raise InvalidArtifact("the ONNX model has an input that is not a tensor")
    if not outputs:
        raise InvalidArtifact("the ONNX model has no tensor output (convert classifiers "
                              "with zipmap disabled)")
    return Signature(inputs, outputs)  # type: ignore[arg-type]


def _spec(arg: Any) -> TensorSpec | None:
    datatype = _ORT_TYPES.get(arg.type)
    if datatype is None:
        return None
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorSpec(arg.name, datatype, shape)


def _checked(override: Signature | None, actual: Signature) -> Signature:
    """An override may restate shapes but must name the graph's inputs and some of its outputs."""
    if override is None:
        return actual
    if {t.name for t in override.inputs} != {t.name for t in actual.inputs}:
        raise InvalidArtifact(f"the signature's inputs must be the graph's: "
                              f"{[t.name for t in actual.inputs]}")
    unknown = set(override.output_names()) - set(actual.output_names())
    if unknown:
        raise InvalidArtifact(f"the signature names outputs the graph lacks: {sorted(unknown)}")
    declared = {t.name: t.datatype for t in (*actual.inputs, *actual.outputs)}
    for spec in (*override.inputs, *override.outputs):
        if declared[spec.name] != spec.datatype:
            raise InvalidArtifact(f"tensor {spec.name!r} is {declared[spec.name]} in the graph, "
                                  f"not {spec.datatype}")
    return override


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
