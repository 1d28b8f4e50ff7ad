"""The ``Runtime`` protocol (how a loaded model predicts) and ``ModelFormat`` (how it loads)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from model_manager.runtimes.signature import Signature
from model_manager.types import Array, Tensors


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """What the server allows when loading an artifact."""

    allow_pickle: bool = False


class Runtime(Protocol):
    """A loaded model. ``predict`` is called from worker threads, possibly concurrently."""

    @property
    def signature(self) -> Signature: ...

    def predict(self, inputs: Tensors, outputs: Sequence[str]) -> dict[str, Array]:
        """Run the model on inputs already checked against ``signature``; return ``outputs``."""
        ...

    def unload(self) -> None:
        """Release what the model holds. No call follows."""
        ...


class ModelFormat(Protocol):
    """A file format and the runtime that serves it."""

    @property
    def name(self) -> str: ...

    @property
    def platform(self) -> str:
        """The v2 model metadata ``platform``, e.g. ``onnxruntime_onnx``."""
        ...

    def matches(self, filename: str, head: bytes) -> bool:
        """Whether a file with this name and first bytes is in this format."""
        ...

    def load(self, path: Path, options: LoadOptions, signature: Signature | None) -> Runtime:
        """Load the artifact; ``signature`` overrides the one read from the file.

        Raises InvalidArtifact if the file cannot be served.
        """
        ...
