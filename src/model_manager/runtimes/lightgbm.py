"""LightGBM boosters saved as text model files (``Booster.save_model`` / ``.txt``).

The signature follows the scikit-learn runtime: one FP64 input of ``num_feature()`` columns;
``label`` and ``probabilities`` for binary and multiclass objectives, ``prediction`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_manager.errors import InvalidArtifact, ModelError
from model_manager.runtimes.archive import has_module, missing_extra
from model_manager.runtimes.base import LoadOptions
from model_manager.runtimes.boosting import booster_outputs, booster_signature
from model_manager.runtimes.signature import Signature
from model_manager.types import Array, Tensors


class LightGBMFormat:
    name = "lightgbm"
    platform = "lightgbm"
    suffixes = (".txt", ".lgb")
    extra = "lightgbm"
    accelerated = False

    def is_available(self) -> bool:
        return has_module("lightgbm")

    def sniff(self, path: Path, head: bytes) -> bool:
        return head.startswith(b"tree\nversion=")

    def load(self, path: Path, options: LoadOptions, signature: Signature | None) -> LightGBMRuntime:
        try:
            import lightgbm
        except ImportError:
            raise missing_extra("lightgbm", "lightgbm") from None
        try:
            booster = lightgbm.Booster(model_file=str(path))
        except lightgbm.basic.LightGBMError as exc:
            raise InvalidArtifact(f"not a loadable LightGBM model: {exc}") from exc
        objective = str(booster.params.get("objective", "regression"))
        return LightGBMRuntime(booster, objective, options.threads,
                               signature or _signature(booster, objective))


class LightGBMRuntime:
    def __init__(self, booster: Any, objective: str, threads: int, signature: Signature) -> None:
        self._booster = booster
        self._objective = objective
        self._threads = threads
        self.signature = signature

    def predict(self, inputs: Tensors, outputs: Sequence[str]) -> dict[str, Array]:
        x = inputs[self.signature.inputs[0].name]
        try:
            raw = np.asarray(self._booster.predict(x, num_threads=self._threads))
        except Exception as exc:  # LightGBM raises LightGBMError and plain ValueErrors
            raise ModelError(f"LightGBM failed: {exc}") from exc
        return booster_outputs(raw, _is_classifier(self._objective), outputs)

    def unload(self) -> None:
        self._booster = None


def _is_classifier(objective: str) -> bool:
    return objective.split()[0] in ("binary", "multiclass", "multiclassova", "cross_entropy")


def _signature(booster: Any, objective: str) -> Signature:
    n_classes = booster.num_model_per_iteration() if _is_classifier(objective) else None
    return booster_signature(booster.num_feature(), "FP64", n_classes)
