"""``ModelCache``: loaded models by (name, version) within a byte budget.

A sized mapping, a policy and hooks:

- *Sized*: each entry's size is what its load added to the process's resident memory, measured
  around the load (an estimate from the artifact makes room before loading, then is replaced by
  the measurement; when another load or unload overlapped, the measurement is muddied and the
  estimate stands). Loaded sizes plus reservations for loads in progress never exceed the budget.
- *Single-flight*: concurrent requests for a version that is not loaded share one load, run in a
  worker thread. No lock is held across a load, so different versions load in parallel.
- *Policy*: to make room, the least recently used entry is evicted, never one serving a request
  and never a pinned one. When nothing can be evicted, a load waits a bounded time for room, then
  fails with Overloaded. A version larger than the whole budget is refused.
- *Failures*: a failed load is remembered with its reason; further loads of that version are
  refused until an exponential backoff has passed. A load that failed because the artifact store
  or the registry could not be reached (``Unreachable``) backs off too, for at most
  ``UNREACHABLE_BACKOFF`` seconds, but leaves the version UNAVAILABLE rather than FAILED: the
  fault is not the model's.
- *Hooks*: loads, failures and unloads are reported to ``CacheHooks`` (metrics).
- *Two budgets*: with an accelerator (``--device cuda``), a version placed on it also has a
  device size, what its load added to the process's device memory, and the device budget bounds
  those sizes the same way: a load makes room in each budget it needs, evicting the least
  recently used models that hold bytes there. The host and device budgets are checked
  independently; a CPU model is never evicted to make room on the device.
- *Shared*: with several worker processes (``workers.Siblings``), the budget is the whole
  server's: a load fits when this worker's bytes plus the other workers' fit, decided under the
  siblings' lock; a load that needs room others hold says so, and they evict their least
  recently used idle models (``relieve``) while this one waits.

Removing an entry that is serving requests only marks it: the last request to finish unloads it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from typing import Any, Protocol

import anyio.to_thread

from model_manager.errors import ModelCrashed, Overloaded, Unavailable, Unreachable
from model_manager.registry.records import VersionRecord
from model_manager.runtimes.base import Runtime, resident_elsewhere
from model_manager.serving.hooks import CacheHooks, NoHooks, UnloadReason
from model_manager.serving.memory import process_rss, release_freed_memory
from model_manager.sizes import human_size
from model_manager.types import VersionKey

log = logging.getLogger(__name__)

Key = VersionKey
Loader = Callable[[VersionRecord], Runtime]

UNREACHABLE_BACKOFF = 5.0
"""The longest wait before retrying a load that failed on an unreachable store or registry."""
SHARED_POLL = 0.05
"""Seconds between looks at the other workers' bytes while a load waits for room."""


class SharedBudget(Protocol):
    """The budget's other holders: the server's other worker processes (``workers.Siblings``)."""

    def locked(self) -> AbstractContextManager[None]: ...

    def others_held(self) -> int: ...

    def publish(self, held: int, wanted: int = 0) -> None: ...

    def excess(self, budget: int) -> int: ...

    def holdings(self, loaded: list[tuple[str, int, int]]) -> None: ...


class DeviceBudget(Protocol):
    """The accelerator as the cache sees it (``devices.Placement``)."""

    @property
    def budget(self) -> int: ...

    def on_device(self, version: VersionRecord) -> bool: ...

    def prepare(self, version: VersionRecord) -> None:
        """A framework's first use of the device, charged to the server (before measuring)."""
        ...

    def used(self) -> int:
        """Device bytes this process holds now."""
        ...


@dataclasses.dataclass(frozen=True)
class Need:
    """Bytes a version holds or needs: in host memory and on the device."""

    host: int
    device: int = 0


class State(enum.StrEnum):
    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"


@dataclasses.dataclass(eq=False)
class LoadedModel:
    version: VersionRecord
    runtime: Runtime
    size: int
    loaded_at: float
    last_used: float
    device_size: int = 0
    pinned: bool = False
    in_flight: int = 0
    removed: bool = False
    unloaded: bool = False
    plan: Any = None
    """What the router decided for this load (``router.Plan``), made on its first prediction."""

    @functools.cached_property
    def key(self) -> Key:
        """(model, version): the same for the entry's life (every request asks for it)."""
        return (self.version.model, self.version.number)


@dataclasses.dataclass(frozen=True)
class VersionState:
    """What the cache knows of one version, for the repository index and the management API."""

    state: State
    reason: str | None = None
    size: int | None = None
    pinned: bool = False
    last_used: float | None = None
    in_flight: int = 0
    device_size: int | None = None


@dataclasses.dataclass(frozen=True)
class _Failure:
    reason: str
    attempts: int
    retry_at: float
    is_models_fault: bool = True


def estimate_size(version: VersionRecord) -> int:
    """Room to make before a first load: the artifact's size with some headroom."""
    return int(version.size * 1.2) + 1024 * 1024


class ModelCache:
    def __init__(self, loader: Loader, budget: int, *, hooks: CacheHooks | None = None,
                 estimate: Callable[[VersionRecord], int] = estimate_size,
                 clock: Callable[[], float] = time.time,
                 meter: Callable[[], int] = process_rss,
                 trim: Callable[[], None] = release_freed_memory,
                 room_wait: float = 10.0, backoff: tuple[float, float] = (1.0, 60.0),
                 after_load: Callable[[LoadedModel], Awaitable[None]] | None = None,
                 shared: SharedBudget | None = None, device: DeviceBudget | None = None) -> None:
        self.budget = budget
        self.device = device
        self._shared = shared
        self._loader = loader
        self._hooks: CacheHooks = hooks or NoHooks()
        self._after_load = after_load
        self._estimate = estimate
        self._clock = clock
        self._meter = meter
        self._trim = trim
        self._room_wait = room_wait
        self._backoff = backoff
        self._entries: dict[Key, LoadedModel] = {}
        self._loading: dict[Key, asyncio.Future[LoadedModel]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: dict[Key, _Failure] = {}
        self._sizes: dict[Key, Need] = {}
        self._reserved = 0
        self._device_reserved = 0
        self._wanted = 0
        self._clean: dict[Key, bool] = {}
        self._changed: asyncio.Future[None] | None = None

    # ---- reading -----------------------------------------------------------------------------

    @property
    def used(self) -> int:
        """Accounted bytes of loaded models."""
        return sum(e.size for e in self._entries.values())

    @property
    def device_used(self) -> int:
        """Accounted device bytes of loaded models."""
        return sum(e.device_size for e in self._entries.values())

    def loaded(self) -> list[LoadedModel]:
        return list(self._entries.values())

    def is_loaded(self, model: str, number: int) -> bool:
        return (model, number) in self._entries

    def state_of(self, model: str, number: int) -> VersionState:
        key = (model, number)
        entry = self._entries.get(key)
        if entry is not None:
            return VersionState(State.READY, None, entry.size, entry.pinned, entry.last_used,
                                entry.in_flight, entry.device_size)
        if key in self._loading:
            return VersionState(State.LOADING)
        failure = self._failures.get(key)
        if failure is not None:
            state = State.FAILED if failure.is_models_fault else State.UNAVAILABLE
            return VersionState(state, failure.reason)
        return VersionState(State.UNAVAILABLE)

    # ---- serving -----------------------------------------------------------------------------

    def acquire(self, version: VersionRecord) -> Held:
        """``async with`` it: the loaded model for ``version``, loading it if needed; never
        unloaded under the block. (The router's hot path holds and releases by hand:
        ``hold_loaded`` or ``hold``, then ``release_now`` or ``release``, exactly once.)"""
        return Held(self, version)

    def hold_loaded(self, version: VersionRecord) -> LoadedModel | None:
        """The version held, if it is loaded (no wait); else None."""
        entry = self._entries.get((version.model, version.number))
        if entry is None or entry.removed:
            return None
        entry.in_flight += 1
        entry.last_used = self._clock()
        return entry

    async def hold(self, version: VersionRecord) -> LoadedModel:
        """The version held, once loaded."""
        while True:
            await self.load(version)
            held = self.hold_loaded(version)
            if held is not None:  # else evicted between its load and this request's turn
                return held

    def release_now(self, entry: LoadedModel, exc: BaseException | None) -> bool:
        """Release ``entry``, whose holder ended with ``exc`` (None: answered), unless that
        needs a wait (a crash to handle, an unload to finish): whether it did."""
        if isinstance(exc, ModelCrashed) or (entry.removed and entry.in_flight == 1):
            return False
        entry.in_flight -= 1
        entry.last_used = self._clock()
        if entry.in_flight == 0:
            self._notify()
        return True

    async def release(self, entry: LoadedModel, exc: BaseException | None) -> None:
        """Release ``entry`` when ``release_now`` could not."""
        try:
            if isinstance(exc, ModelCrashed):
                await self._crashed(entry, exc)
        finally:
            entry.in_flight -= 1
            entry.last_used = self._clock()
            if entry.in_flight == 0:
                if entry.removed:
                    await self._unload(entry, UnloadReason.REQUESTED)
                self._notify()

    async def load(self, version: VersionRecord, *, pin: bool = False) -> LoadedModel:
        key = (version.model, version.number)
        entry = self._entries.get(key)
        if entry is None:
            pending = self._loading.get(key)
            if pending is None:
                self._check_backoff(version)
                pending = asyncio.get_running_loop().create_future()
                self._loading[key] = pending
                task = asyncio.create_task(self._load(version, pending))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            entry = await asyncio.shield(pending)
        if pin:
            entry.pinned = True
        return entry

    def unpin(self, model: str, number: int) -> None:
        entry = self._entries.get((model, number))
        if entry is not None:
            entry.pinned = False
            self._notify()

    async def unload(self, model: str, number: int | None = None) -> list[Key]:
        """Drop a version (or every version of ``model``); each unloads after its last request."""
        keys = [k for k in self._entries if k[0] == model and number in (None, k[1])]
        for key in keys:
            await self._remove(self._entries[key], UnloadReason.REQUESTED)
        self._failures = {k: f for k, f in self._failures.items()
                          if not (k[0] == model and number in (None, k[1]))}
        return keys

    async def unload_idle(self, max_idle: float) -> list[Key]:
        """Unload every entry unused for ``max_idle`` seconds that is neither busy nor pinned."""
        now = self._clock()
        idle = [e for e in self._entries.values()
                if not e.pinned and e.in_flight == 0 and now - e.last_used >= max_idle]
        for entry in idle:
            await self._remove(entry, UnloadReason.IDLE)
        return [e.key for e in idle]

    async def close(self) -> None:
        for entry in list(self._entries.values()):
            await self._remove(entry, UnloadReason.REQUESTED)

    async def _crashed(self, entry: LoadedModel, exc: ModelCrashed) -> None:
        """The process serving ``entry`` died: drop the entry (it unloads after its last
        request) and fail the version with the reason, so it loads again after the backoff.
        Only the first request to see the crash reports it."""
        if self._entries.get(entry.key) is not entry:
            return
        log.warning("%s v%d %s", *entry.key, exc.reason)
        self._hooks.on_crash(entry.key, exc.reason)
        await self._remove(entry, UnloadReason.CRASHED)
        self._record_failure(entry.version, ModelCrashed(exc.reason, exc.reason))

    # ---- loading -----------------------------------------------------------------------------

    def _check_backoff(self, version: VersionRecord) -> None:
        failure = self._failures.get((version.model, version.number))
        if failure is not None and self._clock() < failure.retry_at:
            wait = max(1, round(failure.retry_at - self._clock()))
            error = Unavailable if failure.is_models_fault else Unreachable
            raise error(f"version {version.number} of {version.model!r} failed to load: "
                        f"{failure.reason} (next attempt in {wait}s)", retry_after=wait)

    async def _load(self, version: VersionRecord, pending: asyncio.Future[LoadedModel]) -> None:
        key = (version.model, version.number)
        try:
            entry = await self._load_entry(version)
        except Overloaded as exc:  # no room now: not the model's fault
            pending.set_exception(exc)
            pending.exception()  # mark it retrieved: if every waiter was cancelled, none will
        except Exception as exc:
            pending.set_exception(self._record_failure(version, exc))
            pending.exception()
        else:
            self._failures.pop(key, None)
            pending.set_result(entry)
        finally:
            del self._loading[key]

    async def _load_entry(self, version: VersionRecord) -> LoadedModel:
        key = (version.model, version.number)
        known = self._sizes.get(key)  # measured at an earlier load; nothing measured: estimate
        need = known if known is not None and (known.host or known.device) else self._estimated(version)
        self._check_fits(version, need, "estimated from its artifact")
        await self._make_room(need)  # reserves ``need``
        started = time.perf_counter()
        try:
            entry, measured = await self._measured_load(version)
        finally:
            self._reserved -= need.host
            self._device_reserved -= need.device
            self._notify()
        size = need if measured is None else measured
        entry.size, entry.device_size = size.host, size.device
        if measured is not None:
            self._sizes[key] = measured
        self._entries[key] = entry
        self._publish()
        try:
            self._check_fits(version, size, "measured")
            await self._make_room(Need(0), keep=entry)
        except BaseException:
            await self._remove(entry, UnloadReason.REQUESTED)
            raise
        seconds = time.perf_counter() - started
        on_device = f" (+{human_size(entry.device_size)} on the device)" if entry.device_size else ""
        log.info("loaded %s v%d: %s%s in %.3fs", *key, human_size(entry.size), on_device, seconds)
        self._hooks.on_load(key, entry.size, seconds)
        self._record_holdings()
        return entry

    def _estimated(self, version: VersionRecord) -> Need:
        host = self._estimate(version)
        on_device = self.device is not None and self.device.on_device(version)
        return Need(host, host if on_device else 0)

    async def _measured_load(self, version: VersionRecord) -> tuple[LoadedModel, Need | None]:
        """Load in a worker thread, then run the after-load work (warm-up, golden probe) before
        any request; the RSS (and device memory) all of it added, or None if other loads or
        unloads overlapped."""
        key = (version.model, version.number)
        device = self.device if self.device is not None and self.device.on_device(version) else None
        alone = not self._clean
        self._disturb()
        self._clean[key] = alone
        try:
            if device is not None:  # what a framework's first use holds is the server's
                await anyio.to_thread.run_sync(device.prepare, version)
            before = await anyio.to_thread.run_sync(self._settled_rss)
            device_before = await anyio.to_thread.run_sync(device.used) if device else 0
            runtime = await anyio.to_thread.run_sync(self._loader, version)
            now = self._clock()
            entry = LoadedModel(version, runtime, 0, loaded_at=now, last_used=now)
            if self._after_load is not None:
                try:
                    await self._after_load(entry)
                except Exception:
                    log.exception("after-load work for %s v%d failed", *key)
            added = await anyio.to_thread.run_sync(self._settled_rss) - before
            added += await anyio.to_thread.run_sync(resident_elsewhere, runtime)
            device_added = (await anyio.to_thread.run_sync(device.used) - device_before
                            if device else 0)
        finally:
            clean = self._clean.pop(key)
        return entry, (Need(max(added, 0), max(device_added, 0)) if clean else None)

    def _settled_rss(self) -> int:
        self._trim()
        return self._meter()

    def _disturb(self) -> None:
        """Another load or an unload starts: measurements in progress now see its memory too."""
        for key in self._clean:
            self._clean[key] = False

    def _check_fits(self, version: VersionRecord, size: Need, how: str) -> None:
        if size.host > self.budget:
            raise Unavailable(f"version {version.number} of {version.model!r} needs "
                              f"{human_size(size.host)} ({how}), more than the whole memory "
                              f"budget of {human_size(self.budget)}; "
                              "raise --memory-budget", retry_after=60)
        if self.device is not None and size.device > self.device.budget:
            raise Unavailable(f"version {version.number} of {version.model!r} needs "
                              f"{human_size(size.device)} of device memory ({how}), more than "
                              f"the whole device budget of {human_size(self.device.budget)}; "
                              "raise --gpu-memory-budget", retry_after=60)

    def _record_failure(self, version: VersionRecord, exc: Exception) -> Unavailable:
        key = (version.model, version.number)
        reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        attempts = self._failures[key].attempts + 1 if key in self._failures else 1
        is_models_fault = not isinstance(exc, Unreachable)
        longest = self._backoff[1] if is_models_fault else min(self._backoff[1], UNREACHABLE_BACKOFF)
        delay = min(self._backoff[0] * 2 ** (attempts - 1), longest)
        self._failures[key] = _Failure(reason, attempts, self._clock() + delay, is_models_fault)
        log.warning("loading %s v%d failed (attempt %d): %s", *key, attempts, reason)
        self._hooks.on_load_failure(key, reason)
        if isinstance(exc, Unavailable):
            return exc
        return Unavailable(f"version {version.number} of {version.model!r} failed to load: "
                           f"{reason}", retry_after=max(1, round(delay)))

    # ---- making room -------------------------------------------------------------------------

    async def _make_room(self, need: Need, keep: LoadedModel | None = None) -> None:
        """Evict until ``need`` more bytes fit in each budget, then reserve them."""
        deadline = time.monotonic() + self._room_wait
        on_device = need.device > 0 or (keep is not None and keep.device_size > 0)
        while (host_fits := self._reserve(need, on_device)) is not True:
            victim = self._lru_victim(keep, device_only=host_fits is None)
            if victim is not None:
                await self._remove(victim, UnloadReason.EVICTED)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._want(0)
                raise Overloaded(self._no_room(need, device=host_fits is None),
                                 retry_after=max(1, round(self._room_wait)))
            self._want(need.host)  # other workers evict for it, if they can
            await self._wait_for_change(remaining if self._shared is None
                                        else min(remaining, SHARED_POLL))
        self._want(0)

    def _reserve(self, need: Need, on_device: bool = False) -> bool | None:
        """Reserve ``need`` if it fits with what is held here and by the other workers (the
        check and the reservation are one step for all the workers), and on the device if the
        load goes there: True when reserved, False when host memory is short, None when only
        the device is."""
        with self._shared.locked() if self._shared is not None else nullcontext():
            others = self._shared.others_held() if self._shared is not None else 0
            if self.used + self._reserved + need.host + others > self.budget:
                return False
            if (on_device and self.device is not None
                    and self.device_used + self._device_reserved + need.device > self.device.budget):
                return None
            self._reserved += need.host
            self._device_reserved += need.device
            self._publish()
            return True

    def _no_room(self, need: Need, *, device: bool) -> str:
        if device and self.device is not None:
            return (f"the device memory budget ({human_size(self.device.budget)}) is held by "
                    f"models that are busy or pinned; {human_size(need.device)} more are needed")
        return (f"the memory budget ({human_size(self.budget)}) is held by models that are "
                f"busy or pinned; {human_size(need.host)} more are needed")

    def _want(self, need: int) -> None:
        if need != self._wanted:
            self._wanted = need
            self._publish()

    def _publish(self) -> None:
        if self._shared is not None:
            self._shared.publish(self.used + self._reserved, self._wanted)

    def _record_holdings(self) -> None:
        if self._shared is not None:
            self._shared.holdings([(*e.key, e.size) for e in self._entries.values()])

    async def relieve(self) -> list[Key]:
        """Evict this worker's least recently used idle models while other workers wait for
        room that the budget does not have (several workers only)."""
        evicted: list[Key] = []
        while self._shared is not None and self._shared.excess(self.budget) > 0:
            victim = self._lru_victim(None)
            if victim is None:
                break
            await self._remove(victim, UnloadReason.EVICTED)
            evicted.append(victim.key)
        return evicted

    def _lru_victim(self, keep: LoadedModel | None, device_only: bool = False) -> LoadedModel | None:
        """The least recently used idle model; one that holds device memory if only the device
        is short (evicting a CPU model would free nothing there)."""
        candidates = [e for e in self._entries.values()
                      if e is not keep and not e.pinned and e.in_flight == 0
                      and (e.device_size > 0 or not device_only)]
        return min(candidates, key=lambda e: e.last_used, default=None)

    async def _remove(self, entry: LoadedModel, reason: UnloadReason) -> None:
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
        entry.removed = True
        if entry.in_flight == 0:
            await self._unload(entry, reason)
        self._notify()

    async def _unload(self, entry: LoadedModel, reason: UnloadReason) -> None:
        if entry.unloaded:
            return
        entry.unloaded = True
        self._disturb()

        def unload() -> None:
            entry.runtime.unload()
            self._trim()

        await anyio.to_thread.run_sync(unload)
        log.info("unloaded %s v%d (%s)", *entry.key, reason.value)
        self._hooks.on_unload(entry.key, reason)
        self._record_holdings()

    def _notify(self) -> None:
        """Wake loads waiting for room: something was released."""
        self._publish()
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    async def _wait_for_change(self, timeout: float) -> None:
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        with suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._changed), timeout)


class Held:
    """A model held for one ``async with`` block (``ModelCache.acquire``). A class, not a
    generator context manager: every prediction goes through it."""

    __slots__ = ("_cache", "_entry", "_version")

    def __init__(self, cache: ModelCache, version: VersionRecord) -> None:
        self._cache = cache
        self._version = version
        self._entry: LoadedModel  # set on entering

    async def __aenter__(self) -> LoadedModel:
        # Most requests find their model loaded: held without awaiting another coroutine.
        self._entry = (self._cache.hold_loaded(self._version)
                       or await self._cache.hold(self._version))
        return self._entry

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        traceback: object) -> None:
        if not self._cache.release_now(self._entry, exc):
            await self._cache.release(self._entry, exc)
