"""ModelCache with fake sized runtimes, a fake process memory and an injected clock."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest

from model_manager.errors import InvalidArtifact, Overloaded, Unavailable
from model_manager.registry import VersionRecord
from model_manager.runtimes import Signature, TensorSpec
from model_manager.serving import ModelCache, State
from model_manager.types import Array, Tensors, VersionKey

pytestmark = pytest.mark.anyio

SIGNATURE = Signature((TensorSpec("x", "FP32", (-1,)),), (TensorSpec("y", "FP32", (-1,)),))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def version(model: str = "m", number: int = 1, size: int = 100) -> VersionRecord:
    """A version whose runtime adds ``size`` bytes to the fake memory; its artifact is as large."""
    return VersionRecord(model, number, "0" * 64, size, "onnx", SIGNATURE, {}, datetime.now(UTC),
                         False)


class FakeMemory:
    """The process's RSS as the cache's meter sees it: loads add, unloads subtract."""

    def __init__(self) -> None:
        self.rss = 1000

    def __call__(self) -> int:
        return self.rss


class FakeRuntime:
    signature = SIGNATURE

    def __init__(self, memory: FakeMemory, size: int) -> None:
        self.memory, self.size, self.unloaded = memory, size, False
        memory.rss += size

    def predict(self, inputs: Tensors, outputs: Sequence[str]) -> dict[str, Array]:
        return {"y": inputs["x"]}

    def unload(self) -> None:
        self.unloaded = True
        self.memory.rss -= self.size


class Loader:
    """Counts loads. A closed gate blocks each load's worker thread until opened."""

    def __init__(self, memory: FakeMemory) -> None:
        self.memory = memory
        self.calls: list[VersionKey] = []
        self.entered = threading.Event()
        """Set once a load is running in the loader (and waiting at the gate if it is shut)."""
        self.gate = threading.Event()
        self.gate.set()
        self.fail_with: Exception | None = None
        self.real_size: dict[VersionKey, int] = {}

    def __call__(self, record: VersionRecord) -> FakeRuntime:
        key = (record.model, record.number)
        self.calls.append(key)
        self.entered.set()
        assert self.gate.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        return FakeRuntime(self.memory, self.real_size.get(key, record.size))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Hooks:
    def __init__(self) -> None:
        self.loads: list[tuple[VersionKey, int]] = []
        self.failures: list[VersionKey] = []
        self.unloads: list[tuple[VersionKey, str]] = []

    def on_load(self, key: VersionKey, size: int, seconds: float) -> None:
        self.loads.append((key, size))

    def on_load_failure(self, key: VersionKey, reason: str) -> None:
        self.failures.append(key)

    def on_unload(self, key: VersionKey, reason: str) -> None:
        self.unloads.append((key, reason))


@pytest.fixture
def memory() -> FakeMemory:
    return FakeMemory()


@pytest.fixture
def loader(memory: FakeMemory) -> Loader:
    return Loader(memory)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


def make_cache(loader: Loader, memory: FakeMemory, clock: Clock, hooks: Hooks, budget: int = 300,
               room_wait: float = 0.2) -> ModelCache:
    return ModelCache(loader, budget, hooks=hooks, estimate=lambda v: v.size, clock=clock,
                      meter=memory, trim=lambda: None, room_wait=room_wait)


@pytest.fixture
def cache(loader: Loader, memory: FakeMemory, clock: Clock, hooks: Hooks) -> ModelCache:
    return make_cache(loader, memory, clock, hooks)


async def use(cache: ModelCache, clock: Clock, *versions: VersionRecord) -> None:
    """One request to each version, in order, one clock second apart."""
    for v in versions:
        clock.now += 1
        async with cache.acquire(v):
            pass


def loaded(cache: ModelCache) -> set[VersionKey]:
    return {e.key for e in cache.loaded()}


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for ``condition`` while the event loop runs other tasks (fails past ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.001)


# ---- single flight and loading off the event loop -------------------------------------------

async def test_concurrent_first_requests_cause_one_load(cache: ModelCache, loader: Loader,
                                                        hooks: Hooks) -> None:
    loader.gate.clear()
    waiters = [asyncio.create_task(cache.load(version())) for _ in range(100)]
    await until(loader.entered.is_set)  # the load is in the loader, every waiter has asked
    assert loader.calls == [("m", 1)]
    assert cache.state_of("m", 1).state is State.LOADING
    loader.gate.set()
    entries = await asyncio.gather(*waiters)
    assert len({id(e) for e in entries}) == 1
    assert loader.calls == [("m", 1)]
    assert hooks.loads == [(("m", 1), 100)]


async def test_event_loop_keeps_running_while_a_model_loads(cache: ModelCache,
                                                            loader: Loader) -> None:
    await cache.load(version("fast"))
    loader.gate.clear()
    loader.entered.clear()
    slow = asyncio.create_task(cache.load(version("slow")))
    # A loader run on the event loop would block it at the shut gate: this wait would not end
    # until the gate timed out, and the slow load would then have failed.
    await until(loader.entered.is_set)
    for _ in range(10):  # requests to the loaded model are served while the other one loads
        async with cache.acquire(version("fast")) as entry:
            assert entry.key == ("fast", 1)
    assert not slow.done()
    loader.gate.set()
    await slow


# ---- budget and honest sizes ----------------------------------------------------------------

async def test_measured_size_replaces_the_estimate(cache: ModelCache, loader: Loader) -> None:
    loader.real_size[("m", 1)] = 70
    entry = await cache.load(version(size=100))
    assert entry.size == 70
    assert cache.used == 70


async def test_overlapping_loads_keep_their_estimates(cache: ModelCache, loader: Loader) -> None:
    loader.real_size[("a", 1)] = 10
    loader.real_size[("b", 1)] = 10
    loader.gate.clear()
    both = asyncio.gather(cache.load(version("a", size=50)), cache.load(version("b", size=60)))
    await until(lambda: len(loader.calls) == 2)  # both loads are in the loader at once
    loader.gate.set()
    a, b = await both
    assert (a.size, b.size) == (50, 60)  # each measurement saw the other's memory too


async def test_least_recently_used_is_evicted_first(cache: ModelCache, clock: Clock,
                                                    hooks: Hooks) -> None:
    a, b, c, d = (version(name) for name in "abcd")
    await use(cache, clock, a, b, c, a)  # b is now the least recently used
    await use(cache, clock, d)
    assert loaded(cache) == {("a", 1), ("c", 1), ("d", 1)}
    assert hooks.unloads == [(("b", 1), "evicted")]
    assert cache.used <= cache.budget


async def test_a_model_serving_a_request_is_never_evicted(cache: ModelCache, clock: Clock) -> None:
    a, b, c, d = (version(name) for name in "abcd")
    await use(cache, clock, b, c)
    async with cache.acquire(a) as busy:
        clock.now += 10  # a is now the least recently used, but busy
        await use(cache, clock, d)
        assert not busy.removed and not busy.runtime.unloaded  # type: ignore[attr-defined]
    assert loaded(cache) == {("a", 1), ("c", 1), ("d", 1)}


async def test_a_pinned_model_is_never_evicted(cache: ModelCache, clock: Clock) -> None:
    a, b, c, d = (version(name) for name in "abcd")
    await cache.load(a, pin=True)
    await use(cache, clock, b, c, d)
    assert ("a", 1) in loaded(cache)
    cache.unpin("a", 1)
    await use(cache, clock, b)
    assert ("a", 1) not in loaded(cache)


async def test_a_model_larger_than_the_budget_is_refused(cache: ModelCache, loader: Loader) -> None:
    with pytest.raises(Unavailable, match=r"needs 500 B .*budget of 300 B"):
        await cache.load(version("huge", size=500))
    assert loader.calls == []
    loader.real_size[("liar", 1)] = 400  # small artifact, large in memory
    with pytest.raises(Unavailable, match=r"needs 400 B \(measured\)"):
        await cache.load(version("liar", size=10))
    assert cache.used == 0 and loaded(cache) == set()
    assert cache.state_of("liar", 1).state is State.FAILED


async def test_when_all_is_busy_a_load_waits_then_is_overloaded(cache: ModelCache) -> None:
    async with cache.acquire(version("a", size=200)), cache.acquire(version("b", size=100)):
        with pytest.raises(Overloaded, match="busy or pinned"):
            await cache.load(version("c"))
    assert cache.state_of("c", 1).state is State.UNAVAILABLE  # not the model's fault


async def test_a_waiting_load_proceeds_when_a_request_finishes(
        loader: Loader, memory: FakeMemory, clock: Clock, hooks: Hooks) -> None:
    cache = make_cache(loader, memory, clock, hooks, room_wait=5)
    release = asyncio.Event()

    async def busy() -> None:
        async with cache.acquire(version("a", size=300)):
            await release.wait()

    holder = asyncio.create_task(busy())
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(cache.load(version("b")))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    release.set()
    await holder
    assert (await waiting).key == ("b", 1)
    assert loaded(cache) == {("b", 1)}


async def test_budget_holds_under_random_traffic(cache: ModelCache, clock: Clock,
                                                 memory: FakeMemory) -> None:
    rng = random.Random(7)
    versions = [version(f"m{i}", size=rng.randint(20, 150)) for i in range(12)]

    async def client() -> None:
        for _ in range(40):
            clock.now += 1
            async with cache.acquire(rng.choice(versions)):
                assert cache.used <= cache.budget
                await asyncio.sleep(0)

    await asyncio.gather(*(client() for _ in range(2)))
    assert cache.used <= cache.budget
    assert memory.rss - 1000 == cache.used  # every eviction really unloaded


# ---- failures, idle unloading, explicit unloads ---------------------------------------------

async def test_failed_load_is_retried_with_backoff(cache: ModelCache, loader: Loader, clock: Clock,
                                                   hooks: Hooks) -> None:
    loader.fail_with = InvalidArtifact("corrupt header")
    waiters = [asyncio.create_task(cache.load(version())) for _ in range(5)]
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, Unavailable) and "corrupt header" in str(r) for r in results)
    state = cache.state_of("m", 1)
    assert (state.state, state.reason) == (State.FAILED, "corrupt header")

    with pytest.raises(Unavailable, match="next attempt in 1s"):
        await cache.load(version())
    assert len(loader.calls) == 1  # refused without trying again
    clock.now += 1.5
    with pytest.raises(Unavailable, match="corrupt header"):
        await cache.load(version())
    assert len(loader.calls) == 2
    clock.now += 1.5  # the second failure doubled the wait to 2s
    with pytest.raises(Unavailable, match="next attempt in"):
        await cache.load(version())
    clock.now += 1
    loader.fail_with = None
    await cache.load(version())
    assert cache.state_of("m", 1).state is State.READY
    assert hooks.failures == [("m", 1), ("m", 1)]


async def test_idle_models_are_unloaded(cache: ModelCache, clock: Clock, hooks: Hooks) -> None:
    await use(cache, clock, version("old"), version("pinned"))
    await cache.load(version("pinned"), pin=True)
    clock.now += 100
    await use(cache, clock, version("fresh"))
    assert await cache.unload_idle(60) == [("old", 1)]
    assert loaded(cache) == {("pinned", 1), ("fresh", 1)}
    assert hooks.unloads == [(("old", 1), "idle")]


async def test_unload_waits_for_the_request_in_flight(cache: ModelCache) -> None:
    async with cache.acquire(version()) as entry:
        assert await cache.unload("m") == [("m", 1)]
        assert not cache.is_loaded("m", 1)
        runtime = entry.runtime
        assert isinstance(runtime, FakeRuntime) and not runtime.unloaded
    assert runtime.unloaded


@pytest.mark.parametrize("number", [None, 2])
async def test_unload_by_model_or_version(cache: ModelCache, number: int | None) -> None:
    for v in (version(number=1, size=50), version(number=2, size=50), version("other", size=50)):
        await cache.load(v)
    await cache.unload("m", number)
    assert loaded(cache) == ({("other", 1)} if number is None else {("m", 1), ("other", 1)})
