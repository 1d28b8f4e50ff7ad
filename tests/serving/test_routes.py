"""The route table over a real SQLite registry whose file goes away and comes back."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_manager.errors import NotFound, Unreachable
from model_manager.registry import Registry
from model_manager.registry import schema as t
from model_manager.runtimes.signature import Signature, TensorSpec
from model_manager.serving.routes import RouteTable

pytestmark = pytest.mark.anyio

SIGNATURE = Signature((TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("y", "FP32", (-1, 4)),))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Outage:
    """Takes the registry's database away (as a lost volume would) and brings it back."""

    def __init__(self, registry: Registry, folder: Path) -> None:
        self._registry = registry
        self._folder = folder

    def begin(self) -> None:
        self._registry.engine.dispose()  # pooled connections would still reach the old file
        self._folder.rename(self._folder.with_name("gone"))

    def end(self) -> None:
        self._folder.with_name("gone").rename(self._folder)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry.from_url(f"sqlite:///{tmp_path}/db/registry.db")
    registry.migrate()
    for name in ("iris", "iris", "house"):
        registry.create_version(name, sha256="0" * 64, size=1, format="onnx",
                                signature=SIGNATURE, metadata={})
    registry.set_alias("iris", "production", 1)
    yield registry
    registry.close()


@pytest.fixture
def outage(registry: Registry, tmp_path: Path) -> Outage:
    return Outage(registry, tmp_path / "db")


@pytest.fixture
def reads() -> collections.Counter[str]:
    return collections.Counter()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def table(registry: Registry, clock: Clock, reads: collections.Counter[str]) -> RouteTable:
    return RouteTable(registry, ttl=2.0, clock=clock, on_read=lambda outcome: reads.update([outcome]))


async def settle() -> None:
    """Let background reads (a thread hop each) finish."""
    for _ in range(200):
        await asyncio.sleep(0.005)
        if not asyncio.all_tasks() - {asyncio.current_task()}:
            return


async def test_many_requests_for_an_expired_entry_cause_one_read_and_none_waits(
        table: RouteTable, clock: Clock, reads: collections.Counter[str]) -> None:
    await table.get("iris")
    clock.now = 2.5

    entries = await asyncio.gather(*(table.get("iris") for _ in range(64)))

    assert all(e.read_at == 0.0 for e in entries)  # served what was known, without waiting
    await settle()
    assert reads == {"ok": 2}
    assert (await table.get("iris")).read_at == 2.5


async def test_concurrent_first_requests_share_one_read(
        table: RouteTable, reads: collections.Counter[str]) -> None:
    entries = await asyncio.gather(*(table.get("house") for _ in range(64)))

    assert {e.model.name for e in entries} == {"house"} and reads == {"ok": 1}


async def test_a_change_made_here_is_served_by_the_next_request(
        table: RouteTable, registry: Registry) -> None:
    assert (await table.get("iris")).model.aliases["production"] == 1

    registry.set_alias("iris", "production", 2)

    assert (await table.get("iris")).model.aliases["production"] == 2


async def test_the_last_known_routes_stay_while_the_registry_is_unreachable(
        table: RouteTable, clock: Clock, outage: Outage, registry: Registry,
        reads: collections.Counter[str]) -> None:
    await table.get("iris")
    outage.begin()
    clock.now = 2.5

    assert (await table.get("iris")).model.aliases == {"production": 1}
    await settle()
    assert reads["failed"] == 1 and registry.status.state == "unreachable"
    for _ in range(10):  # within a ttl of the failure: no further read
        assert (await table.get("iris")).read_at == 0.0
    assert reads["failed"] == 1

    outage.end()
    clock.now = 5.0
    await table.get("iris")
    await settle()
    assert (await table.get("iris")).read_at == 5.0 and registry.status.state == "ok"


async def test_a_model_never_read_is_unreachable_not_missing_during_an_outage(
        table: RouteTable, outage: Outage, clock: Clock) -> None:
    outage.begin()

    with pytest.raises(Unreachable, match="the registry is unreachable"):
        await table.get("house")
    with pytest.raises(Unreachable, match="not read yet"):  # backs off instead of reading again
        await table.get("house")
    outage.end()
    clock.now = 2.5
    assert (await table.get("house")).model.name == "house"


async def test_a_deleted_model_is_forgotten_by_its_next_read(
        table: RouteTable, registry: Registry, clock: Clock) -> None:
    await table.get("house")
    registry.delete_version("house", 1)  # the model row stays; drop it as another replica would
    with registry.writing() as conn:
        conn.execute(t.models.delete().where(t.models.c.name == "house"))

    with pytest.raises(NotFound):
        await table.get("house")
