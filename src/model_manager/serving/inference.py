"""An inference request and response as the serving layer sees them: numpy arrays, no wire format.

Every request builds several of these, so they are plain slotted classes: a frozen dataclass
costs about twice as much to build. Nothing changes them once built.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from model_manager.types import Array


@dataclasses.dataclass(slots=True)
class InferInput:
    """One input tensor, already decoded and shaped; ``datatype`` is what the caller declared."""

    name: str
    datatype: str
    data: Array


@dataclasses.dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool | None = None
    """Whether the caller wants this output as binary tensor data; None: the request's default."""


@dataclasses.dataclass(slots=True)
class InferenceRequest:
    inputs: tuple[InferInput, ...]
    outputs: tuple[RequestedOutput, ...] = ()
    """Empty: every output of the signature."""
    id: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class InferOutput:
    name: str
    datatype: str
    data: Array
    finite: bool | None = None
    """Whether ``data`` holds no NaN or infinity, when already known (None: not looked at)."""


@dataclasses.dataclass(slots=True)
class InferenceResponse:
    model_name: str
    model_version: int
    outputs: tuple[InferOutput, ...]
    id: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
