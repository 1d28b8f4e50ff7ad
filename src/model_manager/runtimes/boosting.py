"""What XGBoost and LightGBM boosters share: their signature and their classifier outputs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model_manager.runtimes.signature import Signature, TensorSpec
from model_manager.types import Array


def booster_signature(n_features: int, datatype: str, n_classes: int | None) -> Signature:
    """One input of ``n_features`` columns; ``label`` and ``probabilities`` for a classifier
    (``n_classes`` given), ``prediction`` for a regressor."""
    inputs = (TensorSpec("input", datatype, (-1, n_features)),)
    if n_classes is None:
        return Signature(inputs, (TensorSpec("prediction", datatype, (-1,)),))
    return Signature(inputs, (TensorSpec("label", "INT64", (-1,)),
                              TensorSpec("probabilities", datatype, (-1, max(n_classes, 2)))))


def booster_outputs(raw: Array, is_classifier: bool, wanted: Sequence[str]) -> dict[str, Array]:
    """A booster's raw predictions as the signature's outputs."""
    if not is_classifier:
        return {"prediction": raw.reshape(-1)}
    # binary objectives give the probability of class 1 alone
    probabilities = np.stack([1 - raw, raw], axis=1) if raw.ndim == 1 else raw
    result = {"probabilities": probabilities, "label": probabilities.argmax(axis=1)}
    return {name: result[name] for name in wanted}
