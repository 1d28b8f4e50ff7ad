"""ModelCache: single-flight lazy loads off the event loop; unload waits for the last request."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from model_manager.errors import InvalidArtifact, Unavailable
from model_manager.registry import VersionRecord
from model_manager.runtimes import Signature, TensorSpec
from model_manager.serving import ModelCache
from model_manager.types import Array, Tensors

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


SIGNATURE = Signature((TensorSpec("x", "FP32", (-1,)),), (TensorSpec("y", "FP32", (-1,)),))


def version(model: str = "m", number: int = 1) -> VersionRecord:
    return VersionRecord(model, number, "0" * 64, 1, "onnx", SIGNATURE, {}, datetime.now(UTC), False)


class FakeRuntime:
    signature = SIGNATURE

    def __init__(self) -> None:
        self.unloaded = False

    def predict(self, inputs: Tensors, outputs: Sequence[str]) -> dict[str, Array]:
        return {"y": inputs["x"]}

    def unload(self) -> None:
        self.unloaded = True


class GatedLoader:
    """Counts loads; each blocks its worker thread until ``release`` is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.release = threading.Event()
        self.fail_with: Exception | None = None

    def __call__(self, record: VersionRecord) -> FakeRuntime:
        self.calls.append((record.model, record.number))
        assert self.release.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        return FakeRuntime()


async def test_concurrent_first_requests_cause_one_load() -> None:
    loader = GatedLoader()
    cache = ModelCache(loader)
    waiters = [asyncio.create_task(cache.load(version())) for _ in range(100)]
    await asyncio.sleep(0.05)
    assert loader.calls == [("m", 1)]
    loader.release.set()
    entries = await asyncio.gather(*waiters)
    assert len({id(e) for e in entries}) == 1
    assert loader.calls == [("m", 1)]


async def test_event_loop_keeps_running_while_a_model_loads() -> None:
    loader = GatedLoader()
    cache = ModelCache(loader)
    pending = asyncio.create_task(cache.load(version()))
    ticks = 0
    for _ in range(10):  # the loop turns although the load blocks its thread
        await asyncio.sleep(0.001)
        ticks += 1
    assert ticks == 10 and not pending.done()
    loader.release.set()
    await pending


async def test_failed_load_reaches_every_waiter_and_is_retried() -> None:
    loader = GatedLoader()
    loader.fail_with = InvalidArtifact("corrupt")
    cache = ModelCache(loader)
    waiters = [asyncio.create_task(cache.load(version())) for _ in range(5)]
    loader.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, Unavailable) and "corrupt" in str(r) for r in results)
    loader.fail_with = None
    await cache.load(version())
    assert len(loader.calls) == 2
    assert cache.is_loaded("m", 1)


async def test_unload_waits_for_the_request_in_flight() -> None:
    loader = GatedLoader()
    loader.release.set()
    cache = ModelCache(loader)
    async with cache.acquire(version()) as entry:
        assert await cache.unload("m") == [("m", 1)]
        assert not cache.is_loaded("m", 1)
        runtime = entry.runtime
        assert isinstance(runtime, FakeRuntime) and not runtime.unloaded
    assert runtime.unloaded


@pytest.mark.parametrize("number", [None, 2])
async def test_unload_by_model_or_version(number: int | None) -> None:
    loader = GatedLoader()
    loader.release.set()
    cache = ModelCache(loader)
    for n in (1, 2):
        await cache.load(version(number=n))
    await cache.load(version("other"))
    await cache.unload("m", number)
    remaining = {e.key for e in cache.loaded()}
    assert remaining == ({("other", 1)} if number is None else {("m", 1), ("other", 1)})
