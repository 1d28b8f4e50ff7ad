"""``RouteTable``: what the router needs of the registry, kept in memory.

For each model it holds the model's record (versions and aliases) and its traffic policy, read
from the registry on first use. An entry is read again when this process changed the registry
since (``Registry.generation``), or after ``ttl`` seconds, so that changes made by another
replica sharing the database are served within a few seconds. A request thus costs no
database query.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import anyio.to_thread

from model_manager.registry import ModelRecord, Registry
from model_manager.serving.traffic import TrafficPolicy

TTL = 2.0
"""Seconds an entry is trusted without re-reading it."""


@dataclasses.dataclass(frozen=True)
class ModelRoutes:
    model: ModelRecord
    policy: TrafficPolicy | None
    generation: int
    read_at: float


class RouteTable:
    def __init__(self, registry: Registry, ttl: float = TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._registry = registry
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, ModelRoutes] = {}

    async def get(self, name: str) -> ModelRoutes:
        """The model's routes; raises NotFound for an unknown model."""
        entry = self._entries.get(name)
        if entry is None or entry.generation != self._registry.generation \
                or self._clock() - entry.read_at > self._ttl:
            entry = await anyio.to_thread.run_sync(self._read, name)
            self._entries[name] = entry
        return entry

    def _read(self, name: str) -> ModelRoutes:
        generation = self._registry.generation  # before reading: a change meanwhile re-reads
        model = self._registry.get_model(name)
        stored = self._registry.get_policy(name)
        policy = TrafficPolicy.from_json(stored) if stored is not None else None
        if len(self._entries) > 10_000:  # names of deleted models do not pile up
            self._entries.clear()
        return ModelRoutes(model, policy, generation, self._clock())
