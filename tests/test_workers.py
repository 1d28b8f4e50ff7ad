"""What the worker processes share (``workers``): the ledger of the one budget, the channel, the
leader's lock; with real processes, and two caches sharing one budget."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from model_manager import workers
from model_manager.errors import Overloaded
from model_manager.serving import ModelCache
from tests.serving.test_cache import Clock, FakeMemory, Hooks, Loader, version

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024
Join = Callable[[], workers.Siblings]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in (workers.RUN_DIR_ENV, "PROMETHEUS_MULTIPROC_DIR"):  # prepare sets them
        monkeypatch.setenv(name, "")  # and the monkeypatch puts them back as they were
    folder = workers.prepare(2, tmp_path)
    yield folder


@pytest.fixture
def join(run: Path) -> Iterator[Callable[[], workers.Siblings]]:
    """This process joining the run folder as a worker (as many times as asked)."""
    joined: list[workers.Siblings] = []

    def new() -> workers.Siblings:
        joined.append(workers.Siblings(run))
        return joined[-1]

    yield new
    for siblings in joined:
        siblings.close()


def sibling(run: Path, conn: multiprocessing.connection.Connection, held: int,
            lead: bool) -> None:
    """Another worker: holds ``held`` bytes, announces a change, maybe leads, then waits."""
    me = workers.Siblings(run)
    me.publish(held)
    me.announce("unload", model="m", version=1)
    conn.send((me.slot, me.is_leader() if lead else None))
    conn.recv()  # until told to end (or killed)
    me.close()


@pytest.fixture
def other(run: Path) -> Iterator[tuple[multiprocessing.Process, int, bool | None,
                                       multiprocessing.connection.Connection]]:
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=sibling,
                                                          args=(run, theirs, 60 * MiB, True))
    process.start()
    theirs.close()
    slot, led = ours.recv()
    yield process, slot, led, ours
    if process.is_alive():
        process.kill()
    process.join()


def test_prepare_refuses_a_count_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--workers takes 1 to 256"):
        workers.prepare(0, tmp_path)


def test_a_worker_sees_the_others_bytes_until_they_die(join: Join, other: tuple) -> None:
    process, other_slot, _, _ = other
    me = join()
    assert me.slot != other_slot
    me.publish(10 * MiB)
    assert me.others_held() == 60 * MiB
    assert me.excess(100 * MiB) == 0
    me.publish(10 * MiB, wanted=50 * MiB)  # we wait for 50: they must free 20
    assert me.excess(100 * MiB) == 0  # our own want is not ours to relieve
    process.kill()
    process.join()
    assert me.others_held() == 0  # a dead worker's memory went with it
    assert me.reap() == [process.pid]


def test_news_arrive_once_and_a_worker_does_not_hear_itself(run: Path, join: Join,
                                                            other: tuple) -> None:
    listener = join()  # joined after the other worker's announcement: that one came before it
    listener.announce("pin", model="m", version=2)  # its own: not news to it
    process = multiprocessing.get_context("spawn").Process(target=announce_unpin, args=(run,))
    process.start()
    process.join()
    heard = listener.news()
    assert [(n["kind"], n["version"]) for n in heard] == [("unpin", 2)]
    assert heard[0]["pid"] == process.pid
    assert listener.news() == []


def test_the_leader_is_one_worker_and_another_takes_over_when_it_dies(join: Join,
                                                                       other: tuple) -> None:
    process, _, led, _ = other
    assert led is True
    me = join()
    assert not me.is_leader()
    process.kill()
    process.join()
    assert me.is_leader()


def test_a_question_is_answered_by_every_live_worker(join: Join, other: tuple) -> None:
    me = join()
    number = me.ask("cache")
    assert me.news() == []  # our own question is not news to us
    assert me.answers(number) == ([], False)  # the other has not answered yet
    other[0].kill()
    other[0].join()
    assert me.answers(number) == ([], True)  # a dead worker has nothing left to say


def test_answers_to_an_older_question_do_not_count(run: Path, join: Join) -> None:
    me, other = join(), join()  # same pid here: the other answers as a separate slot
    first = me.ask("totals")
    other.answer(first, {"n": 1})
    assert me.answers(first) == ([{"n": 1}], True)
    second = me.ask("totals")
    assert me.answers(second) == ([], False)


def announce_unpin(run: Path) -> None:
    siblings = workers.Siblings(run)
    siblings.announce("unpin", model="m", version=2)
    siblings.close()


def shared_cache(siblings: workers.Siblings, memory: FakeMemory, budget: int
                 ) -> tuple[ModelCache, Loader]:
    loader = Loader(memory)
    cache = ModelCache(loader, budget, hooks=Hooks(), estimate=lambda v: v.size, clock=Clock(),
                       meter=memory, trim=lambda: None, room_wait=2.0, shared=siblings)
    return cache, loader


async def test_two_caches_share_one_budget_and_the_idle_one_makes_room(
        join: Join) -> None:
    first, _ = shared_cache(join(), FakeMemory(), 100)
    second, _ = shared_cache(join(), FakeMemory(), 100)
    await first.load(version("a", size=60))
    waiting = asyncio.create_task(second.load(version("b", size=60)))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # 60 + 60 does not fit in 100: the second waits for room
    assert await first.relieve() == [("a", 1)]  # the first evicts its idle model for it
    await asyncio.wait_for(waiting, 2)
    assert second.is_loaded("b", 1) and not first.is_loaded("a", 1)


async def test_a_load_that_others_cannot_make_room_for_is_overloaded(
        join: Join) -> None:
    first, _ = shared_cache(join(), FakeMemory(), 100)
    second, _ = shared_cache(join(), FakeMemory(), 100)
    await first.load(version("a", size=60), pin=True)
    with pytest.raises(Overloaded):
        await second.load(version("b", size=60))
    assert await first.relieve() == []  # pinned: never evicted for another worker either
