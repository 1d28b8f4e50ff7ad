"""XGBoost boosters saved with ``save_model`` (``.ubj`` or ``.json``), classifiers and regressors.

The signature follows the scikit-learn runtime: one FP32 input of ``num_features`` columns;
``label`` and ``probabilities`` for classification objectives, ``prediction`` otherwise.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_manager.errors import InvalidArtifact, ModelError, Unavailable
from model_manager.runtimes.archive import has_module, missing_extra
from model_manager.runtimes.base import LoadOptions
from model_manager.runtimes.boosting import booster_outputs, booster_signature
from model_manager.runtimes.signature import Signature
from model_manager.types import Array, Tensors


class XGBoostFormat:
    name = "xgboost"
    platform = "xgboost"
    suffixes = (".ubj", ".json")
    extra = "xgboost"
    accelerated = True

    def is_available(self) -> bool:
        return has_module("xgboost")

    def sniff(self, path: Path, head: bytes) -> bool:
        # UBJSON and JSON models both open with an object whose first key is "learner".
        return head.startswith((b'{"learner"', b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner",
                                b"{i\x07learner", b"{U\x07learner"))

    def load(self, path: Path, options: LoadOptions, signature: Signature | None) -> XGBoostRuntime:
        try:
            import xgboost
        except ImportError:
            raise missing_extra("xgboost", "xgboost") from None
        device = _device(options.device)
        booster = xgboost.Booster({"nthread": options.threads})
        try:
            booster.load_model(bytearray(path.read_bytes()))  # a blob's name has no suffix
        except xgboost.core.XGBoostError as exc:
            raise InvalidArtifact(f"not a loadable XGBoost model: {str(exc).splitlines()[0]}") from exc
        booster.set_param({"device": device})  # after the load, which brings its own parameters
        learner = json.loads(booster.save_config())["learner"]
        objective = learner["objective"]["name"]
        n_classes = int(learner["learner_model_param"].get("num_class", "0"))
        return XGBoostRuntime(booster, objective, n_classes,
                              signature or _signature(booster.num_features(), objective, n_classes))


class XGBoostRuntime:
    def __init__(self, booster: Any, objective: str, n_classes: int, signature: Signature) -> None:
        self._booster = booster
        self._objective = objective
        self._n_classes = n_classes
        self.signature = signature

    def predict(self, inputs: Tensors, outputs: Sequence[str]) -> dict[str, Array]:
        import xgboost

        x = inputs[self.signature.inputs[0].name]
        try:
            raw = np.asarray(self._booster.inplace_predict(x))
        except (xgboost.core.XGBoostError, ValueError) as exc:
            raise ModelError(f"XGBoost failed: {str(exc).splitlines()[0]}") from exc
        return booster_outputs(raw, _is_classifier(self._objective), outputs)

    def unload(self) -> None:
        self._booster = None


def _device(device: str) -> str:
    """XGBoost's ``device`` parameter; a build without CUDA would quietly predict on the CPU."""
    if device == "cpu":
        return device
    import xgboost

    if not xgboost.build_info().get("USE_CUDA"):
        raise Unavailable(f"this XGBoost build cannot run models on {device}: install the "
                          "xgboost package (the CUDA build) in place of xgboost-cpu",
                          retry_after=60)
    # Inputs arrive in host memory: XGBoost copies them over, and says so on every call.
    warnings.filterwarnings("ignore", message=".*mismatched devices.*", category=UserWarning)
    return device


def _is_classifier(objective: str) -> bool:
    return objective.startswith(("binary:", "multi:"))


def _signature(n_features: int, objective: str, n_classes: int) -> Signature:
    return booster_signature(n_features, "FP32", n_classes if _is_classifier(objective) else None)
