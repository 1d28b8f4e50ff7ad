"""The real server and CLI on a simulated CUDA device, for machines without one: run them with
``ENV`` (``tests/fake_device_site`` on PYTHONPATH), which installs it in every process, the
workers of ``serve --workers`` too.

Only the device is simulated; the server's own code runs as it would on a GPU. The device's
memory is a counter: the CUDA context takes ``CONTEXT_BYTES`` when the accelerator opens,
PyTorch's first use of the device ``FIRST_USE_BYTES``, and a PyTorch model placed on ``cuda``
(which runs on the CPU here) holds its parameters' and buffers' bytes until it is unloaded.
Other frameworks see no CUDA device, as on a machine whose onnxruntime lacks the CUDA provider.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from model_manager import devices
from model_manager.runtimes.base import LoadOptions
from model_manager.runtimes.signature import Signature
from model_manager.runtimes.torch import TorchFormat, TorchRuntime

ROOT = Path(__file__).resolve().parent.parent
ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "fake_device_site")])}
MiB = 1024 * 1024
TOTAL_BYTES = 1024 * MiB
CONTEXT_BYTES = 300 * MiB
FIRST_USE_BYTES = 8 * MiB
NAME = "Simulated GPU"


class SimulatedMemory:
    def __init__(self) -> None:
        self.held = 0

    def used(self) -> int:
        return self.held

    def free(self) -> int:
        return TOTAL_BYTES - self.held


MEMORY = SimulatedMemory()


def open_accelerator(device: str, budget: int | None, share: float = 1.0) -> devices.Accelerator:
    free_at_start = MEMORY.free()
    MEMORY.held += CONTEXT_BYTES
    chosen = budget if budget is not None else int(free_at_start * devices.DEFAULT_SHARE)
    return devices.Accelerator(device, NAME, MEMORY, int(chosen * share), MEMORY.used())


def first_use(self: TorchFormat, device: str) -> None:
    MEMORY.held += FIRST_USE_BYTES


real_load = TorchFormat.load


def load(self: TorchFormat, path: Path, options: LoadOptions,
         signature: Signature | None) -> TorchRuntime:
    runtime = real_load(self, path, dataclasses.replace(options, device="cpu"), signature)
    if options.device == "cpu":
        return runtime
    module: Any = runtime._module
    held = sum(t.numel() * t.element_size()
               for t in (*module.parameters(), *module.buffers()))
    MEMORY.held += held
    unload = runtime.unload

    def unload_from_device() -> None:
        MEMORY.held -= held
        unload()

    runtime.unload = unload_from_device  # type: ignore[method-assign]
    return runtime


def install() -> None:
    """Put the simulated device in place of CUDA, in this process."""
    devices.open_accelerator = open_accelerator
    devices.check_device = lambda device: NAME
    TorchFormat.first_use = first_use  # type: ignore[attr-defined]
    TorchFormat.load = load  # type: ignore[method-assign]
