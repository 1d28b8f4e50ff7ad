"""``RouteTable``: what the router needs of the registry, kept in memory.

For each model it holds the model's record (versions and aliases) and its traffic policy. A
request costs no database query, and never waits for one once its model has been read:

- An entry older than ``ttl`` seconds is re-read in the background (so that changes made by
  another replica sharing the database are served within a few seconds); the request is served
  the entry it found. One read is in flight per model, however many requests find it old.
- When this process changed the registry since the entry was read (``Registry.generation``), the
  request waits for that one read, so that a change made through this server is served by its
  next request.
- When a read fails, the last known routes stay in force; the failure is logged once (with the
  age of the routes) and the read is tried again ``ttl`` seconds later.
- A model this process never read is read on the request path; while the registry is
  unreachable that is ``Unreachable`` (503 with Retry-After), not an error of the model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable

import anyio.to_thread

from model_manager.errors import NotFound, Unreachable
from model_manager.registry import ModelRecord, Registry
from model_manager.serving.traffic import TrafficPolicy

log = logging.getLogger(__name__)

TTL = 2.0
"""Seconds an entry is trusted without re-reading it."""
MAX_ENTRIES = 10_000
"""More entries than this and the table starts afresh (names of deleted models do not pile up)."""


@dataclasses.dataclass(frozen=True)
class ModelRoutes:
    model: ModelRecord
    policy: TrafficPolicy | None
    generation: int
    read_at: float


@dataclasses.dataclass(frozen=True)
class _Failure:
    at: float
    generation: int


class RouteTable:
    def __init__(self, registry: Registry, ttl: float = TTL,
                 clock: Callable[[], float] = time.monotonic,
                 on_read: Callable[[str], None] | None = None) -> None:
        """``on_read`` is told the outcome (``ok``, ``not_found``, ``failed``) of every read."""
        self._registry = registry
        self._ttl = ttl
        self._clock = clock
        self._on_read = on_read or (lambda outcome: None)
        self._entries: dict[str, ModelRoutes] = {}
        self._reading: dict[str, asyncio.Task[ModelRoutes]] = {}
        self._failures: dict[str, _Failure] = {}

    async def get(self, name: str) -> ModelRoutes:
        """The model's routes; raises NotFound for an unknown model, Unreachable for a model
        not read yet while the registry is unreachable."""
        return self.get_known(name) or await self.read(name)

    def get_known(self, name: str) -> ModelRoutes | None:
        """``get``'s answer when it needs no read first (the routes this server holds, fresh
        or being re-read in the background), else None: every request asks, and most need no
        wait (``read`` then gives the others). Raises as ``get`` does."""
        entry = self._entries.get(name)
        if self._failures and self._failed_lately(name):
            if entry is None:
                raise Unreachable(f"the registry is unreachable and model {name[:80]!r} was not "
                                  f"read yet by this server; retry shortly")
            return entry
        if entry is None or entry.generation != self._registry.generation:
            return None
        if self._clock() - entry.read_at > self._ttl:
            self._start(name)
        return entry

    async def read(self, name: str) -> ModelRoutes:
        """The model's routes read from the registry; the ones held, if any, when it is
        unreachable."""
        entry = self._entries.get(name)
        try:
            return await asyncio.shield(self._start(name))
        except Unreachable:
            if entry is None:
                raise
            return entry

    def _failed_lately(self, name: str) -> bool:
        """Whether a read failed within ``ttl`` and nothing changed here since."""
        failure = self._failures.get(name)
        return (failure is not None and failure.generation == self._registry.generation
                and self._clock() - failure.at <= self._ttl)

    def _start(self, name: str) -> asyncio.Task[ModelRoutes]:
        """The model's read in flight, started if there is none."""
        task = self._reading.get(name)
        if task is None:
            task = self._reading[name] = asyncio.create_task(self._read(name))
            task.add_done_callback(functools.partial(self._finished, name))
        return task

    def _finished(self, name: str, task: asyncio.Task[ModelRoutes]) -> None:
        del self._reading[name]
        if not task.cancelled():
            task.exception()  # retrieved: a background read's failure was handled in _read

    async def _read(self, name: str) -> ModelRoutes:
        generation = self._registry.generation  # before reading: a change meanwhile re-reads
        try:
            entry = await anyio.to_thread.run_sync(self._query, name, generation)
        except NotFound:
            self._on_read("not_found")
            self._entries.pop(name, None)
            raise
        except Exception as exc:
            self._on_read("failed")
            self._note_failure(name, generation, exc)
            raise
        self._on_read("ok")
        if name in self._failures:
            del self._failures[name]
            log.info("routes of %r read again", name)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[name] = entry
        return entry

    def _query(self, name: str, generation: int) -> ModelRoutes:
        model = self._registry.get_model(name)
        stored = self._registry.get_policy(name)
        policy = TrafficPolicy.from_json(stored) if stored is not None else None
        return ModelRoutes(model, policy, generation, self._clock())

    def _note_failure(self, name: str, generation: int, exc: Exception) -> None:
        known = self._entries.get(name)
        if name not in self._failures and known is not None:
            log.warning("routes of %r could not be re-read (%s); serving those read %.1fs ago "
                        "until the registry answers", name, getattr(exc, "message", exc),
                        self._clock() - known.read_at)
        if len(self._failures) >= MAX_ENTRIES:
            self._failures.clear()
        self._failures[name] = _Failure(self._clock(), generation)
