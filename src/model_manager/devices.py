"""Where models run: the CPU, or one CUDA device whose memory the model cache budgets.

``--device cuda:N`` opens an ``Accelerator``: a probe of the device memory this process holds
(NVML's per-process count, which sees every framework; PyTorch's allocator counters where NVML is
not installed), the budget for models, and what the server itself holds there. The CUDA context
is created once at start, before any model, and charged to the server (``context_bytes``), not to
the first model that happens to load; so is a framework's own first use of the device (PyTorch's
cuBLAS workspace), measured the first time a version of that framework loads there.

Which versions go on the device is the catalog's call (``Catalog.device_for``): formats that can
run there, unless the version's metadata pins it to ``cpu`` or it runs in a model process of its
own (a second CUDA context per process would not fit one budget).
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from model_manager.registry.records import VersionRecord

log = logging.getLogger(__name__)

CPU = "cpu"
DEFAULT_SHARE = 0.9
"""The default device budget: this share of the device's free memory at start."""


class NoDevice(Exception):
    """The device asked for cannot be used: no driver, no such device, no way to measure it."""


def parse_device(text: str) -> str:
    """``cpu``, ``cuda`` (device 0) or ``cuda:N``, in the form frameworks take: ``cuda:N``."""
    value = text.strip().lower()
    if value == CPU:
        return CPU
    if value == "cuda":
        return "cuda:0"
    match = re.fullmatch(r"cuda:(\d{1,3})", value)
    if match is None:
        raise ValueError(f"not a device: {text!r} (cpu, cuda or cuda:N)")
    return f"cuda:{int(match[1])}"


def device_index(device: str) -> int:
    return int(device.partition(":")[2] or 0)


class DeviceMemory(Protocol):
    """Reads of one device's memory."""

    def used(self) -> int:
        """Bytes this process holds on the device."""
        ...

    def free(self) -> int:
        """Bytes free on the whole device."""
        ...


class NvmlMemory:
    """NVML's count of the device memory held by this process: every framework's allocations,
    their caches and the context. Where the process is not listed under its own pid (a container
    with its own pid namespace), the device's whole use less what others held at start."""

    def __init__(self, index: int) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = _nvml_handle(pynvml, index)
        self._others = self._device_used()
        self.name = str(pynvml.nvmlDeviceGetName(self._handle))

    def used(self) -> int:
        processes = self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
        mine = [p.usedGpuMemory for p in processes if p.pid == os.getpid()]
        if mine:
            return int(mine[0] or 0)
        if not processes:
            return 0
        return max(self._device_used() - self._others, 0)

    def free(self) -> int:
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).free)

    def _device_used(self) -> int:
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)


def _nvml_handle(nvml: Any, index: int) -> Any:
    """NVML's handle of CUDA's device ``index``. NVML numbers every device in PCI bus order;
    CUDA numbers those CUDA_VISIBLE_DEVICES names, in that order (by index or UUID), and
    ``open_accelerator`` makes CUDA order them by PCI bus too."""
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
               if d.strip()] if "CUDA_VISIBLE_DEVICES" in os.environ else None
    if visible is None:
        if index >= nvml.nvmlDeviceGetCount():
            raise NoDevice(f"no CUDA device {index}: {nvml.nvmlDeviceGetCount()} found")
        return nvml.nvmlDeviceGetHandleByIndex(index)
    if index >= len(visible):
        raise NoDevice(f"no CUDA device {index}: CUDA_VISIBLE_DEVICES names {len(visible)}")
    chosen = visible[index]
    if chosen.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(chosen))
    return nvml.nvmlDeviceGetHandleByUUID(chosen)


class TorchMemory:
    """PyTorch's own counters, where NVML is not installed: they see PyTorch's memory only."""

    def __init__(self, index: int) -> None:
        import torch

        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise NoDevice(f"no CUDA device {index} (PyTorch sees {torch.cuda.device_count()})")
        self._torch = torch
        self._index = index
        self.name = torch.cuda.get_device_name(index)

    def used(self) -> int:
        return int(self._torch.cuda.memory_reserved(self._index))

    def free(self) -> int:
        return int(self._torch.cuda.mem_get_info(self._index)[0])


@dataclasses.dataclass
class Accelerator:
    """The device models are placed on, its budget for models, and what the server holds there."""

    device: str
    name: str
    memory: DeviceMemory
    budget: int
    context_bytes: int = 0
    """Device bytes the server holds for itself: the CUDA context, frameworks' first use."""
    _prepared: set[str] = dataclasses.field(default_factory=set)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def used(self) -> int:
        """Bytes this process holds on the device, after returning what frameworks cache."""
        release_device_memory()
        return self.memory.used()

    def prepare(self, framework: str, first_use: Callable[[str], None] | None) -> None:
        """Run a framework's first use of the device once, charging what it keeps to the
        server rather than to the version that happens to load first."""
        with self._lock:
            if framework in self._prepared:
                return
            self._prepared.add(framework)
            if first_use is None:
                return
            before = self.used()
            first_use(self.device)
            added = max(self.used() - before, 0)
            self.context_bytes += added
            log.info("%s's first use of %s holds %.1f MiB, charged to the server", framework,
                     self.device, added / 2**20)


@dataclasses.dataclass(frozen=True)
class Placement:
    """The accelerator as the model cache sees it (``serving.cache.DeviceBudget``): which
    versions go there, and the frameworks' first uses that are charged to the server."""

    accelerator: Accelerator
    device_for: Callable[[VersionRecord], str]
    first_use: Callable[[str], Callable[[str], None] | None]

    @property
    def budget(self) -> int:
        return self.accelerator.budget

    def on_device(self, version: VersionRecord) -> bool:
        return self.device_for(version) != CPU

    def prepare(self, version: VersionRecord) -> None:
        self.accelerator.prepare(version.format, self.first_use(version.format))

    def used(self) -> int:
        return self.accelerator.used()


def check_device(device: str) -> str:
    """The device's name, if it is there and its memory can be measured; else NoDevice.
    Creates no CUDA context (a supervisor checks before its workers start)."""
    return _probe(device_index(device))[1]


def open_accelerator(device: str, budget: int | None, share: float = 1.0) -> Accelerator:
    """Open ``device`` (``cuda:N``): create its CUDA context and size the budget (default:
    ``DEFAULT_SHARE`` of the free memory at start), times ``share`` (one worker's part).
    NoDevice if it cannot be used."""
    index = device_index(device)
    memory, name = _probe(index)
    free_at_start = memory.free()
    _create_context(index)
    context = memory.used()
    chosen = budget if budget is not None else int(free_at_start * DEFAULT_SHARE)
    accelerator = Accelerator(device, name, memory, int(chosen * share), context)
    log.info("models run on %s (%s): device memory budget %.0f MiB, the CUDA context holds "
             "%.0f MiB", device, name, accelerator.budget / 2**20, context / 2**20)
    return accelerator


def _probe(index: int) -> tuple[DeviceMemory, str]:
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # NVML's order; read at CUDA's init
    try:
        nvml = NvmlMemory(index)
        return nvml, nvml.name
    except ImportError:
        pass
    except Exception as exc:  # pynvml raises NVMLError subclasses: no driver, no device
        if type(exc).__name__.startswith("NVMLError"):
            raise NoDevice(f"no CUDA device {index}: NVML says {exc}") from exc
        raise
    try:
        torch_memory = TorchMemory(index)
    except ImportError:
        raise NoDevice("a CUDA device needs nvidia-ml-py to account its memory: install "
                       "ml-model-manager[gpu]") from None
    log.warning("nvidia-ml-py is not installed: device memory is PyTorch's counters only, "
                "blind to other frameworks; install ml-model-manager[gpu]")
    return torch_memory, torch_memory.name


def _create_context(index: int) -> None:
    """Retain the device's primary context, which PyTorch, onnxruntime, XGBoost and XLA share,
    through the driver API (no framework needed)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        raise NoDevice(f"the CUDA driver is not installed: {exc}") from exc
    dev = ctypes.c_int()
    context = ctypes.c_void_p()
    for call, args in (("cuInit", (0,)), ("cuDeviceGet", (ctypes.byref(dev), index)),
                       ("cuDevicePrimaryCtxRetain", (ctypes.byref(context), dev))):
        status = getattr(cuda, call)(*args)
        if status != 0:
            raise NoDevice(f"CUDA's {call} failed with status {status} on device {index}")


def release_device_memory() -> None:
    """Return what frameworks cache of freed device memory to the device, so a measurement (and
    the next load) sees it free. PyTorch keeps freed blocks in its caching allocator."""
    torch: Any = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
