"""scikit-learn estimators, from skops files (safe) or, only when allowed, pickle/joblib.

The signature is read from the estimator: one input ``input`` of ``n_features_in_`` FP64 columns
(or a BYTES vector for text pipelines, which have no ``n_features_in_``); outputs ``label`` and
``probabilities`` for classifiers, ``prediction`` for regressors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_manager.errors import InvalidArtifact, ModelError, UnsafeArtifact
from model_manager.runtimes.archive import zip_members
from model_manager.runtimes.base import LoadOptions
from model_manager.runtimes.signature import Signature, TensorSpec, datatype_of
from model_manager.types import Array, Tensors

_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
# Estimators and the numeric types they hold; anything else in a skops file is refused.
_TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.")


class SklearnFormat:
    name = "sklearn"
    platform = "sklearn"
    suffixes = (".skops", *_PICKLE_SUFFIXES)
    extra = None
    accelerated = False

    def is_available(self) -> bool:
        return True

    def sniff(self, path: Path, head: bytes) -> bool:
        return head[:1] == b"\x80" or "schema.json" in zip_members(path)

    def load(self, path: Path, options: LoadOptions, signature: Signature | None) -> SklearnRuntime:
        with open(path, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":
            estimator = _load_skops(path, options)
        elif options.allow_pickle:
            estimator = _load_pickle(path)
        elif head[:1] != b"\x80":
            raise InvalidArtifact("neither a skops file (a zip archive) nor a pickle; save the "
                                  "model with skops.io.dump (pickle/joblib need --allow-pickle)")
        else:
            raise UnsafeArtifact(
                "pickle and joblib files can run arbitrary code when loaded, so they are refused; "
                "save the model with skops (skops.io.dump) or start the server with --allow-pickle "
                "if every uploader is trusted")
        if not hasattr(estimator, "predict"):
            raise InvalidArtifact(f"{type(estimator).__name__} has no predict method")
        return SklearnRuntime(estimator, _checked(signature, _read_signature(estimator)))


class SklearnRuntime:
    def __init__(self, estimator: Any, signature: Signature) -> None:
        self._estimator = estimator
        self.signature = signature
        self._input = signature.inputs[0].name
        self._is_text = signature.inputs[0].datatype == "BYTES"

    @property
    def estimator(self) -> Any:
        return self._estimator

    def predict(self, inputs: Tensors, outputs: Sequence[str]) -> dict[str, Array]:
        x: Any = inputs[self._input]
        if self._is_text:
            x = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in x.ravel()]
        try:
            return {name: np.asarray(self._method(name)(x)) for name in outputs}
        except (ValueError, TypeError, AttributeError) as exc:
            raise ModelError(f"{type(self._estimator).__name__} failed: {exc}") from exc

    def unload(self) -> None:
        self._estimator = None

    def _method(self, output: str) -> Any:
        if output == "probabilities":
            return self._estimator.predict_proba
        return self._estimator.predict


def _load_skops(path: Path, options: LoadOptions) -> Any:
    from model_manager.runtimes.skops_io import sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
        refused = [t for t in untrusted if not t.startswith(_TRUSTED_MODULES)]
        if refused and not options.allow_pickle:
            raise UnsafeArtifact(f"the skops file holds types that are not trusted: {refused}; "
                                 "start the server with --allow-pickle to trust every type")
        return sio.load(path, trusted=untrusted)
    except (UnsafeArtifact, InvalidArtifact):
        raise
    except Exception as exc:  # skops raises many kinds on a corrupt archive
        raise InvalidArtifact(f"not a loadable skops file: {exc}") from exc


def _load_pickle(path: Path) -> Any:
    import joblib

    try:
        return joblib.load(path)
    except Exception as exc:
        raise InvalidArtifact(f"not a loadable pickle/joblib file: {exc}") from exc


def _read_signature(estimator: Any) -> Signature:
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None:
        inputs = (TensorSpec("input", "BYTES", (-1,)),)
    else:
        inputs = (TensorSpec("input", "FP64", (-1, int(n_features))),)
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return Signature(inputs, (TensorSpec("prediction", "FP64", (-1,)),))
    outputs = [TensorSpec("label", datatype_of(np.asarray(classes).dtype), (-1,))]
    if hasattr(estimator, "predict_proba"):
        outputs.append(TensorSpec("probabilities", "FP64", (-1, len(classes))))
    return Signature(inputs, tuple(outputs))


def _checked(override: Signature | None, actual: Signature) -> Signature:
    """An override may rename the input and restate shapes; datatypes and outputs are the model's."""
    if override is None:
        return actual
    if len(override.inputs) != 1 or override.inputs[0].datatype != actual.inputs[0].datatype:
        raise InvalidArtifact(f"a scikit-learn model takes one {actual.inputs[0].datatype} input")
    declared = {t.name: t.datatype for t in actual.outputs}
    for spec in override.outputs:
        if declared.get(spec.name) != spec.datatype:
            raise InvalidArtifact(f"this estimator's outputs are "
                                  f"{[t.to_json() for t in actual.outputs]}, not {spec.to_json()}")
    return override
