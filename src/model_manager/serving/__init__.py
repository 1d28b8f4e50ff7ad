"""The hot path: route a prediction to a loaded model and run it."""

from __future__ import annotations

from model_manager.serving.cache import LoadedModel, ModelCache, State, VersionState
from model_manager.serving.inference import (
    InferenceRequest,
    InferenceResponse,
    InferInput,
    InferOutput,
    RequestedOutput,
)
from model_manager.serving.lifecycle import VersionLifecycle
from model_manager.serving.router import PredictionRouter

__all__ = [
    "InferInput",
    "InferOutput",
    "InferenceRequest",
    "InferenceResponse",
    "LoadedModel",
    "ModelCache",
    "PredictionRouter",
    "RequestedOutput",
    "State",
    "VersionLifecycle",
    "VersionState",
]
