"""``ModelCache``: loaded models by (name, version), loaded lazily and once.

Loads are single-flight: concurrent first requests for a version share one load, which runs in
a worker thread so the event loop keeps serving. No lock is held across a load, so loads of
different versions run in parallel. A model in use is never unloaded under a request: removing
it only marks it, and the last request to finish releases it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio.to_thread

from model_manager.errors import InvalidArtifact, Unavailable
from model_manager.registry.records import VersionRecord
from model_manager.runtimes.base import Runtime

log = logging.getLogger(__name__)

Key = tuple[str, int]
Loader = Callable[[VersionRecord], Runtime]


@dataclasses.dataclass(eq=False)
class LoadedModel:
    version: VersionRecord
    runtime: Runtime
    loaded_at: float
    last_used: float
    in_flight: int = 0
    removed: bool = False

    @property
    def key(self) -> Key:
        return (self.version.model, self.version.number)


class ModelCache:
    """Loaded models, with single-flight lazy loading and unload-after-last-use."""

    def __init__(self, loader: Loader, clock: Callable[[], float] = time.monotonic) -> None:
        self._loader = loader
        self._clock = clock
        self._entries: dict[Key, LoadedModel] = {}
        self._loading: dict[Key, asyncio.Future[LoadedModel]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def loaded(self) -> list[LoadedModel]:
        return list(self._entries.values())

    def is_loaded(self, model: str, number: int) -> bool:
        return (model, number) in self._entries

    @asynccontextmanager
    async def acquire(self, version: VersionRecord) -> AsyncIterator[LoadedModel]:
        """The loaded model for ``version``, loading it if needed, held for the block."""
        entry = await self.load(version)
        entry.in_flight += 1
        try:
            yield entry
        finally:
            entry.in_flight -= 1
            entry.last_used = self._clock()
            if entry.removed and entry.in_flight == 0:
                await _unload(entry)

    async def load(self, version: VersionRecord) -> LoadedModel:
        key = (version.model, version.number)
        entry = self._entries.get(key)
        if entry is not None:
            return entry
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._loading[key] = pending
            task = asyncio.create_task(self._load(version, pending))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(pending)

    async def unload(self, model: str, number: int | None = None) -> list[Key]:
        """Drop a version (or every version of ``model``); each unloads after its last request."""
        keys = [k for k in self._entries if k[0] == model and number in (None, k[1])]
        for key in keys:
            entry = self._entries.pop(key)
            entry.removed = True
            if entry.in_flight == 0:
                await _unload(entry)
        return keys

    async def close(self) -> None:
        for model, number in list(self._entries):
            await self.unload(model, number)

    async def _load(self, version: VersionRecord, pending: asyncio.Future[LoadedModel]) -> None:
        key = (version.model, version.number)
        try:
            started = time.perf_counter()
            runtime = await anyio.to_thread.run_sync(self._loader, version)
        except BaseException as exc:
            pending.set_exception(_load_error(version, exc))
            pending.exception()  # mark it retrieved: if every waiter was cancelled, none will
        else:
            now = self._clock()
            entry = LoadedModel(version, runtime, loaded_at=now, last_used=now)
            self._entries[key] = entry
            log.info("loaded %s v%d in %.3fs", version.model, version.number,
                     time.perf_counter() - started)
            pending.set_result(entry)
        finally:
            del self._loading[key]


def _load_error(version: VersionRecord, exc: BaseException) -> BaseException:
    if isinstance(exc, InvalidArtifact):
        return Unavailable(f"version {version.number} of {version.model!r} cannot be loaded: "
                           f"{exc.message}", retry_after=30)
    return exc


async def _unload(entry: LoadedModel) -> None:
    await anyio.to_thread.run_sync(entry.runtime.unload)
    log.info("unloaded %s v%d", *entry.key)
