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
    """What the server allows when loading an artifact, and how runtimes use the machine."""

    allow_pickle: bool = False
    allow_custom_code: bool = False
    """Keras Lambda layers and custom objects, which run arbitrary code."""
    threads: int = 1
    """Intra-op threads per model, so N loaded models do not each start a thread per core."""
    device: str = "cpu"
    """Where the model runs: ``cpu`` or ``cuda:N`` (formats that are ``accelerated``)."""


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


def is_out_of_process(runtime: Runtime) -> bool:
    """Whether the model runs in another process: a call waits on it, so it never runs on the
    event loop, however fast it usually answers (a hang there would stall the server)."""
    return hasattr(runtime, "resident_bytes")


def resident_elsewhere(runtime: Runtime) -> int:
    """Bytes the runtime holds outside this process (a model process's own memory), which a
    measurement of this process's RSS does not see."""
    measure = getattr(runtime, "resident_bytes", None)
    return int(measure()) if measure is not None else 0


class ModelFormat(Protocol):
    """A file format and the runtime that serves it."""

    @property
    def name(self) -> str: ...

    @property
    def platform(self) -> str:
        """The v2 model metadata ``platform``, e.g. ``onnxruntime_onnx``."""
        ...

    @property
    def suffixes(self) -> tuple[str, ...]:
        """File name endings that mean this format, lower case, with the dot."""
        ...

    @property
    def accelerated(self) -> bool:
        """Whether models of this format can run on a CUDA device (``LoadOptions.device``)."""
        ...

    @property
    def extra(self) -> str | None:
        """The package extra that installs this format's framework; None: always installed."""
        ...

    def is_available(self) -> bool:
        """Whether this format's framework can be imported here."""
        ...

    def sniff(self, path: Path, head: bytes) -> bool:
        """Whether a file with these contents (first bytes ``head``) is in this format."""
        ...

    def load(self, path: Path, options: LoadOptions, signature: Signature | None) -> Runtime:
        """Load the artifact; ``signature`` overrides the one read from the file.

        Raises InvalidArtifact if the file cannot be served.
        """
        ...
