"""ModelCache with an accelerator: a fake device whose memory loads add to and unloads give back,
beside the fake process memory of ``test_cache``. Host and device budgets hold independently."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import pytest

from model_manager.errors import Overloaded, Unavailable
from model_manager.registry import VersionRecord
from model_manager.serving import ModelCache, State
from model_manager.types import Array, Tensors
from tests.serving.test_cache import (
    SIGNATURE,
    Clock,
    FakeMemory,
    Hooks,
    loaded,
    until,
    use,
    version,
)

pytestmark = pytest.mark.anyio

HOST_PER_MODEL = 10
"""Host bytes a device model's load keeps (its Python objects); the weights go to the device."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeDevice:
    """The cache's ``DeviceBudget``: versions with ``"device": "cuda"`` in their metadata go
    there. A framework's first use holds ``first_use_bytes`` for good."""

    def __init__(self, budget: int, first_use_bytes: int = 0) -> None:
        self.budget = budget
        self.held = 0
        self.first_use_bytes = first_use_bytes
        self.prepared: list[str] = []
        self.peak = 0

    def on_device(self, record: VersionRecord) -> bool:
        return bool(record.metadata.get("device") == "cuda")

    def prepare(self, record: VersionRecord) -> None:
        if record.format not in self.prepared:
            self.prepared.append(record.format)
            self.allocate(self.first_use_bytes)

    def used(self) -> int:
        return self.held

    def allocate(self, size: int) -> None:
        self.held += size
        self.peak = max(self.peak, self.held)


class DeviceRuntime:
    signature = SIGNATURE

    def __init__(self, memory: FakeMemory, device: FakeDevice | None, size: int) -> None:
        self.memory, self.device = memory, device
        self.host = HOST_PER_MODEL if device else size
        self.on_device = size if device else 0
        memory.rss += self.host
        if device is not None:
            device.allocate(size)

    def predict(self, inputs: Tensors, outputs: Sequence[str]) -> dict[str, Array]:
        return {"y": inputs["x"]}

    def unload(self) -> None:
        self.memory.rss -= self.host
        if self.device is not None:
            self.device.allocate(-self.on_device)


def gpu_version(model: str, size: int = 100, number: int = 1) -> VersionRecord:
    return replace(version(model, number, size), format="torch", metadata={"device": "cuda"})


def make_cache(memory: FakeMemory, device: FakeDevice, clock: Clock, hooks: Hooks,
               budget: int = 10_000, room_wait: float = 0.2) -> ModelCache:
    def load(record: VersionRecord) -> DeviceRuntime:
        return DeviceRuntime(memory, device if device.on_device(record) else None, record.size)

    return ModelCache(load, budget, hooks=hooks, estimate=lambda v: v.size, clock=clock,
                      meter=memory, trim=lambda: None, room_wait=room_wait, device=device)


async def test_a_device_load_is_measured_on_the_device_and_in_host_memory_apart() -> None:
    memory, device, clock, hooks = FakeMemory(), FakeDevice(budget=1000), Clock(), Hooks()
    cache = make_cache(memory, device, clock, hooks)
    entry = await cache.load(gpu_version("g", size=300))
    cpu = await cache.load(version("c", size=50))
    assert (entry.size, entry.device_size) == (HOST_PER_MODEL, 300)
    assert (cpu.size, cpu.device_size) == (50, 0)
    assert (cache.used, cache.device_used) == (HOST_PER_MODEL + 50, 300)
    state = cache.state_of("g", 1)
    assert (state.state, state.size, state.device_size) == (State.READY, HOST_PER_MODEL, 300)


async def test_a_frameworks_first_use_is_charged_to_the_server_not_the_first_model() -> None:
    memory, device, clock, hooks = FakeMemory(), FakeDevice(1000, first_use_bytes=250), Clock(), Hooks()
    cache = make_cache(memory, device, clock, hooks)
    first = await cache.load(gpu_version("a", size=100))
    second = await cache.load(gpu_version("b", size=100))
    assert (first.device_size, second.device_size) == (100, 100)
    assert device.prepared == ["torch"]
    assert device.held == 450  # the server's 250 stay outside the models' budget


async def test_walking_more_models_than_the_device_holds_evicts_the_least_recently_used() -> None:
    memory, device, clock, hooks = FakeMemory(), FakeDevice(budget=512), Clock(), Hooks()
    cache = make_cache(memory, device, clock, hooks)
    models = [gpu_version(f"m{i}", size=128) for i in range(6)]
    for _ in range(2):
        for v in models:
            await use(cache, clock, v)
            assert cache.device_used <= 512
    assert device.peak <= 512
    evicted = [key for key, reason in hooks.unloads if reason == "evicted"]
    assert len(evicted) == 12 - 4  # the first four fit; every later load evicts the oldest
    assert evicted[:2] == [("m0", 1), ("m1", 1)]
    assert loaded(cache) == {("m2", 1), ("m3", 1), ("m4", 1), ("m5", 1)}


async def test_room_on_the_device_is_never_made_by_evicting_a_cpu_model() -> None:
    memory, device, clock, hooks = FakeMemory(), FakeDevice(budget=200), Clock(), Hooks()
    cache = make_cache(memory, device, clock, hooks)
    await use(cache, clock, version("cpu", size=100), gpu_version("g1", size=150))
    await use(cache, clock, gpu_version("g2", size=150))  # the CPU model is the older one
    assert loaded(cache) == {("cpu", 1), ("g2", 1)}
    assert hooks.unloads == [(("g1", 1), "evicted")]


async def test_host_memory_short_evicts_any_model_while_the_device_has_room() -> None:
    memory, device, clock, hooks = FakeMemory(), FakeDevice(budget=1000), Clock(), Hooks()
    cache = make_cache(memory, device, clock, hooks, budget=150)
    await use(cache, clock, version("cpu1", size=100), gpu_version("g", size=100))
    await use(cache, clock, version("cpu2", size=100))  # host: 100 + 10 + 100 > 150
    assert loaded(cache) == {("g", 1), ("cpu2", 1)}
    assert hooks.unloads == [(("cpu1", 1), "evicted")]
    await use(cache, clock, version("cpu3", size=100))  # now the device model is the oldest
    assert loaded(cache) == {("cpu3", 1)}


async def test_a_pinned_and_a_busy_model_hold_the_device_until_one_is_free() -> None:
    memory, device, clock, hooks = FakeMemory(), FakeDevice(budget=300), Clock(), Hooks()
    cache = make_cache(memory, device, clock, hooks, room_wait=5)
    await cache.load(gpu_version("pinned", size=150), pin=True)
    busy = cache.acquire(gpu_version("busy", size=150))
    await busy.__aenter__()
    waiting = asyncio.create_task(cache.load(gpu_version("next", size=150)))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # neither the pinned nor the busy one may go
    await busy.__aexit__(None, None, None)
    entry = await asyncio.wait_for(waiting, 5)
    assert entry.key == ("next", 1)
    assert loaded(cache) == {("pinned", 1), ("next", 1)}


async def test_a_load_that_cannot_get_device_room_is_overloaded_naming_the_device() -> None:
    memory, device, clock, hooks = FakeMemory(), FakeDevice(budget=300), Clock(), Hooks()
    cache = make_cache(memory, device, clock, hooks)
    await cache.load(gpu_version("pinned", size=250), pin=True)
    with pytest.raises(Overloaded, match="device memory budget") as caught:
        await cache.load(gpu_version("other", size=100))
    assert caught.value.retry_after >= 1
    await until(lambda: cache.state_of("other", 1).state is State.UNAVAILABLE)
    assert device.held == 250


async def test_a_version_larger_than_the_whole_device_budget_is_refused() -> None:
    memory, device, clock, hooks = FakeMemory(), FakeDevice(budget=300), Clock(), Hooks()
    cache = make_cache(memory, device, clock, hooks)
    with pytest.raises(Unavailable, match="--gpu-memory-budget"):
        await cache.load(gpu_version("huge", size=400))
    assert device.held == 0  # refused from its estimate, before loading


async def test_a_measured_device_size_over_the_budget_unloads_it_again() -> None:
    memory, device, clock, hooks = FakeMemory(), FakeDevice(budget=300), Clock(), Hooks()

    def load(record: VersionRecord) -> DeviceRuntime:
        return DeviceRuntime(memory, device, 400)  # its artifact said 100

    cache = ModelCache(load, 10_000, hooks=hooks, estimate=lambda v: v.size, clock=clock,
                       meter=memory, trim=lambda: None, room_wait=0.2, device=device)
    with pytest.raises(Unavailable, match="400 B of device memory \\(measured\\)"):
        await cache.load(gpu_version("liar", size=100))
    assert device.held == 0
    assert loaded(cache) == set()


async def test_concurrent_first_requests_to_a_device_model_share_one_load() -> None:
    memory, device, clock, hooks = FakeMemory(), FakeDevice(budget=1000), Clock(), Hooks()
    cache = make_cache(memory, device, clock, hooks)
    entries = await asyncio.gather(*(cache.load(gpu_version("g", 200)) for _ in range(50)))
    assert len({id(e) for e in entries}) == 1
    assert device.held == 200
    assert hooks.loads == [(("g", 1), HOST_PER_MODEL)]
