"""Device names, and how device memory is read: NVML's per-process count (through a stand-in of
``pynvml``, the NVIDIA library's Python binding), and a framework's first use charged once."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from model_manager import devices
from tests.fake_device import SimulatedMemory


@pytest.mark.parametrize(("text", "device"), [
    ("cpu", "cpu"), ("CPU", "cpu"), ("cuda", "cuda:0"), ("cuda:0", "cuda:0"), (" cuda:3 ", "cuda:3"),
])
def test_device_names(text: str, device: str) -> None:
    assert devices.parse_device(text) == device


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:-1", "cuda:1:2", "tpu", "cuda:99999"])
def test_other_names_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="cpu, cuda or cuda:N"):
        devices.parse_device(text)


@dataclass
class Process:
    pid: int
    usedGpuMemory: int | None


@dataclass
class MemoryInfo:
    used: int
    free: int


class FakeNvml(types.ModuleType):
    """The calls of pynvml that ``NvmlMemory`` makes, on one device of 1000 bytes."""

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.processes: list[Process] = []
        self.device_used = 100  # another process's

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"handle{index}"

    def nvmlDeviceGetName(self, handle: str) -> str:
        return "Fake H100"

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[Process]:
        return self.processes

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> MemoryInfo:
        return MemoryInfo(self.device_used, 1000 - self.device_used)


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNvml]:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    yield fake


def test_nvml_counts_this_process_by_its_pid(nvml: FakeNvml) -> None:
    memory = devices.NvmlMemory(0)
    assert memory.used() == 0  # no context yet: the process is not listed
    nvml.processes = [Process(1, 100), Process(os.getpid(), 300)]
    nvml.device_used = 400
    assert (memory.used(), memory.free()) == (300, 600)


def test_where_pids_differ_nvml_counts_the_device_less_what_others_held_at_start(
        nvml: FakeNvml) -> None:
    memory = devices.NvmlMemory(0)  # others hold 100 now
    nvml.processes = [Process(4242, None)]  # this process, under the container's pid namespace
    nvml.device_used = 350
    assert memory.used() == 250


def test_a_device_nvml_does_not_list_is_no_device(nvml: FakeNvml) -> None:
    with pytest.raises(devices.NoDevice, match="no CUDA device 3: 1 found"):
        devices.NvmlMemory(3)


def test_a_frameworks_first_use_is_run_once_and_charged_to_the_server() -> None:
    memory = SimulatedMemory()
    accelerator = devices.Accelerator("cuda:0", "Fake", memory, budget=500, context_bytes=50)
    calls: list[str] = []

    def first_use(device: str) -> None:
        calls.append(device)
        memory.held += 30

    for _ in range(3):
        accelerator.prepare("torch", first_use)
    accelerator.prepare("onnx", None)
    assert calls == ["cuda:0"]
    assert accelerator.context_bytes == 80


def test_onnx_sessions_on_a_device_take_the_cuda_provider_and_fall_back_to_the_cpu_for_the_rest(
) -> None:
    from model_manager.errors import Unavailable
    from model_manager.runtimes.onnx import execution_providers

    assert execution_providers("cpu", ["CPUExecutionProvider"]) == [("CPUExecutionProvider", {})]
    providers = execution_providers("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers[0] == ("CUDAExecutionProvider",
                            {"device_id": "1", "arena_extend_strategy": "kSameAsRequested"})
    assert providers[1:] == [("CPUExecutionProvider", {})]
    with pytest.raises(Unavailable, match="install ml-model-manager\\[gpu\\]"):
        execution_providers("cuda:0", ["CPUExecutionProvider"])


def test_cuda_visible_devices_picks_the_device_nvml_measures(
        nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    handles: list[str] = []
    monkeypatch.setattr(nvml, "nvmlDeviceGetHandleByIndex",
                        lambda i: handles.append(f"index {i}") or f"h{i}", raising=False)
    monkeypatch.setattr(nvml, "nvmlDeviceGetHandleByUUID",
                        lambda u: handles.append(f"uuid {u}") or u, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,GPU-1234")
    devices.NvmlMemory(0)
    devices.NvmlMemory(1)
    assert handles == ["index 3", "uuid GPU-1234"]
    with pytest.raises(devices.NoDevice, match="CUDA_VISIBLE_DEVICES names 2"):
        devices.NvmlMemory(2)


def test_a_pytorch_without_cuda_refuses_a_device_load_saying_so(tmp_path: Path) -> None:
    import torch

    from model_manager.errors import Unavailable
    from model_manager.runtimes import LoadOptions, get_format

    if torch.cuda.is_available():
        pytest.skip("this PyTorch has a CUDA device")
    net = torch.nn.Linear(2, 1).eval()
    program = torch.export.export(net, (torch.zeros(1, 2),))
    torch.export.save(program, str(tmp_path / "net.pt2"))
    with pytest.raises(Unavailable, match="install a CUDA build of torch"):
        get_format("torch").load(tmp_path / "net.pt2", LoadOptions(device="cuda:0"), None)
