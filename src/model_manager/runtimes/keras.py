"""Keras 3 models: ``.keras`` archives and legacy HDF5 ``.h5`` files (tf.keras 2.x included).

Keras runs on the JAX backend unless ``KERAS_BACKEND`` says otherwise: of the backends that
install here it is the lightest (keras + jax + jaxlib ~690 MB, ``import keras`` ~1.1 s, against
~1 GB and ~3 s on PyTorch), and TensorFlow is not needed to load or run these files.

Loading is safe by default: a model with Lambda layers or custom objects (which run arbitrary
code) is refused unless the server allows custom code (``--allow-custom-code``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from model_manager.devices import device_index
from model_manager.errors import InvalidArtifact, ModelError, Unavailable, UnsafeArtifact
from model_manager.runtimes.archive import HDF5_MAGIC, has_module, missing_extra, zip_members
from model_manager.runtimes.base import LoadOptions
from model_manager.runtimes.signature import Signature, TensorSpec, datatype_of
from model_manager.types import Array, Tensors

_UNSAFE = "start the server with --allow-custom-code if every uploader is trusted"


class KerasFormat:
    name = "keras"
    platform = "keras"
    suffixes = (".keras", ".h5", ".hdf5")
    extra = "keras"
    accelerated = True

    def is_available(self) -> bool:
        return has_module("keras")

    def sniff(self, path: Path, head: bytes) -> bool:
        if head.startswith(HDF5_MAGIC):
            return True
        members = zip_members(path)
        return "config.json" in members and "metadata.json" in members

    def load(self, path: Path, options: LoadOptions, signature: Signature | None) -> KerasRuntime:
        keras = _import_keras(options.threads)
        with open(path, "rb") as f:
            is_h5 = f.read(8) == HDF5_MAGIC
        if is_h5 and not options.allow_custom_code:
            _refuse_lambda_layers(path)
        # Keras picks its loader by file name; stored blobs are named by digest.
        with tempfile.TemporaryDirectory(prefix="keras-") as folder:
            named = Path(folder) / ("model.h5" if is_h5 else "model.keras")
            named.symlink_to(path.resolve())
            with _placed(device := _jax_device(keras, options.device)):
                model = _load(keras, named, is_h5, options.allow_custom_code)
        return KerasRuntime(model, signature or _read_signature(model), device)


def _jax_device(keras: Any, device: str) -> Any:
    """The JAX device to run on, or None to leave JAX's default (the CPU where JAX has no other
    backend). Only the JAX backend is placed."""
    if keras.backend.backend() != "jax":
        if device != "cpu":
            raise Unavailable(f"Keras runs models on {device} with the JAX backend only "
                              f"(KERAS_BACKEND is {keras.backend.backend()!r})", retry_after=60)
        return None
    import jax

    if device == "cpu":
        return None if jax.default_backend() == "cpu" else jax.devices("cpu")[0]
    try:
        gpus = jax.devices("cuda")
    except RuntimeError:
        raise Unavailable(f"JAX here cannot run models on {device}: install its CUDA plugin "
                          "(pip install 'jax[cuda12]')", retry_after=60) from None
    index = device_index(device)
    if index >= len(gpus):
        raise Unavailable(f"JAX sees {len(gpus)} CUDA devices, not {device}", retry_after=60)
    return gpus[index]


def _placed(device: Any) -> AbstractContextManager[Any]:
    if device is None:
        return nullcontext()
    import jax

    return jax.default_device(device)  # type: ignore[no-any-return]


def _load(keras: Any, path: Path, is_h5: bool, allow_custom_code: bool) -> Any:
    try:
        if is_h5:  # legacy HDF5 loading has no safe mode: _refuse_lambda_layers stands in
            return keras.saving.load_model(path, compile=False)
        return keras.saving.load_model(path, compile=False, safe_mode=not allow_custom_code)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise UnsafeArtifact(f"the Keras model runs custom code ({_first_line(exc)}); "
                                 + _UNSAFE) from exc
        raise InvalidArtifact(f"not a loadable Keras model: {_first_line(exc)}") from exc
    except (TypeError, KeyError, OSError, AttributeError) as exc:
        raise InvalidArtifact(f"not a loadable Keras model (custom objects need "
                              f"--allow-custom-code): {_first_line(exc)}") from exc


class KerasRuntime:
    def __init__(self, model: Any, signature: Signature, device: Any = None) -> None:
        self._model = model
        self.signature = signature
        self._names = [t.name for t in signature.inputs]
        self._device = device

    def predict(self, inputs: Tensors, outputs: Sequence[str]) -> dict[str, Array]:
        batch = [inputs[name] for name in self._names]
        try:
            with _placed(self._device):
                raw = self._model.predict_on_batch(batch[0] if len(batch) == 1 else batch)
        except Exception as exc:  # backends raise their own error types
            raise ModelError(f"Keras failed: {_first_line(exc)}") from exc
        values = raw if isinstance(raw, list | tuple) else [raw]
        produced = dict(zip(self.signature.output_names(), (np.asarray(v) for v in values),
                            strict=False))
        return {name: produced[name] for name in outputs if name in produced}

    def unload(self) -> None:
        self._model = None
        import keras

        keras.backend.clear_session(free_memory=True)


def _import_keras(threads: int) -> Any:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    # XLA's CPU client starts one thread per core unless told otherwise (read at import).
    os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={str(threads > 1).lower()} "
                                       f"intra_op_parallelism_threads={threads}")
    try:
        import keras
    except ImportError:
        raise missing_extra("keras", "keras") from None
    return keras


def _refuse_lambda_layers(path: Path) -> None:
    """Legacy HDF5 loading has no safe mode: look for Lambda layers in the stored config."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
    except OSError as exc:
        raise InvalidArtifact(f"not a readable HDF5 file: {exc}") from exc
    if config is None:
        raise InvalidArtifact("the HDF5 file holds no model_config (weights only?)")
    text = config.decode() if isinstance(config, bytes) else str(config)
    if '"class_name": "Lambda"' in text.replace("'", '"') or "Lambda" in _layer_classes(text):
        raise UnsafeArtifact("the Keras model has Lambda layers, which run arbitrary code; "
                             + _UNSAFE)


def _layer_classes(text: str) -> set[str]:
    try:
        config = json.loads(text)
    except json.JSONDecodeError:
        return set()
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "class_name" in node:
                found.add(str(node["class_name"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def _read_signature(model: Any) -> Signature:
    try:
        inputs = tuple(_spec(t, _layer_name(t, f"input_{i}")) for i, t in enumerate(model.inputs))
        outputs = tuple(_spec(t, _layer_name(t, f"output_{i}")) for i, t in enumerate(model.outputs))
    except (AttributeError, ValueError, TypeError) as exc:
        raise InvalidArtifact(f"cannot read the Keras model's inputs and outputs ({exc}); "
                              "give a 'signature' in the upload's metadata") from exc
    return Signature(inputs, outputs)


def _layer_name(tensor: Any, fallback: str) -> str:
    """The name of the layer that makes the tensor: stable across saves, unlike tensor names."""
    history = getattr(tensor, "_keras_history", None)
    operation = history[0] if history else None
    return str(getattr(operation, "name", None) or fallback)


def _spec(tensor: Any, name: str) -> TensorSpec:
    shape = tuple(-1 if d is None else int(d) for d in tensor.shape)
    dtype = np.dtype("object" if str(tensor.dtype) == "string" else str(tensor.dtype))
    return TensorSpec(name, datatype_of(dtype), shape)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
