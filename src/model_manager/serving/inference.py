"""An inference request and response as the serving layer sees them: numpy arrays, no wire format."""

from __future__ import annotations

import dataclasses
from typing import Any

from model_manager.types import Array


@dataclasses.dataclass(frozen=True)
class InferInput:
    """One input tensor, already decoded and shaped; ``datatype`` is what the caller declared."""

    name: str
    datatype: str
    data: Array


@dataclasses.dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None = None
    """Whether the caller wants this output as binary tensor data; None: the request's default."""


@dataclasses.dataclass(frozen=True)
class InferenceRequest:
    inputs: tuple[InferInput, ...]
    outputs: tuple[RequestedOutput, ...] = ()
    """Empty: every output of the signature."""
    id: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class InferOutput:
    name: str
    datatype: str
    data: Array


@dataclasses.dataclass(frozen=True)
class InferenceResponse:
    model_name: str
    model_version: int
    outputs: tuple[InferOutput, ...]
    id: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
