"""``VersionLifecycle``: changes that touch both the registry and the loaded models.

Moving an alias is a zero-downtime switch: the new version is loaded and warmed first, then the
alias moves in one registry transaction, so every later request resolves to the new version while
requests already running finish on the old one. The old version is then unloaded once drained,
unless an alias or a pin still points at it.

With several worker processes, what this worker does to its loaded models (an unload, a pin, an
unpin, a retired version) is announced to the others (``announce``), which ``apply`` it to theirs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import anyio.to_thread
import numpy as np

from model_manager.errors import Conflict, ModelManagerError
from model_manager.registry import ModelRecord, Registry, VersionRecord
from model_manager.runtimes import DATATYPES, Runtime
from model_manager.serving.cache import LoadedModel, ModelCache
from model_manager.serving.traffic import TrafficPolicy
from model_manager.telemetry.events import EventLog
from model_manager.types import Array, VersionKey

if TYPE_CHECKING:  # the catalog validates uploads with serving's rules: no import cycle
    from model_manager.catalog import Catalog

log = logging.getLogger(__name__)


class ProbeResults(Protocol):
    def last_probe(self, key: VersionKey) -> ProbeOutcome | None: ...


class ProbeOutcome(Protocol):
    @property
    def passed(self) -> bool: ...

    @property
    def detail(self) -> str: ...


class VersionLifecycle:
    def __init__(self, catalog: Catalog, cache: ModelCache, probes: ProbeResults,
                 events: EventLog, announce: Callable[..., None] | None = None) -> None:
        self._announce = announce or (lambda kind, **fields: None)
        self._catalog = catalog
        self._registry: Registry = catalog.registry
        self._cache = cache
        self._probes = probes
        self._events = events

    async def set_alias(self, name: str, alias: str, ref: str | int, *, force: bool = False,
                        actor: str | None = None) -> VersionRecord:
        """Point ``alias`` at a version, loaded (warmed and probed) first. ``production`` refuses
        a version whose golden probe fails, unless ``force``."""
        target = await anyio.to_thread.run_sync(self._registry.get_version, name, ref)
        previous = (await self._model(name)).aliases.get(alias)
        if previous != target.number and not target.archived:
            await self._cache.load(target)
            probe = self._probes.last_probe((name, target.number))
            if alias == "production" and probe is not None and not probe.passed and not force:
                raise Conflict(f"version {target.number} of {name!r} fails its golden probe "
                               f"({probe.detail}); it cannot serve production unless forced")
        record = await anyio.to_thread.run_sync(self._registry.set_alias, name, alias,
                                                target.number, actor)
        if previous != target.number:
            self._events.emit("alias_change", model=name, alias=alias, version=target.number,
                              previous=previous, forced=force)
        if previous is not None and previous != target.number:
            await self._retire(name, previous)
        return record

    async def set_traffic(self, name: str, spec: dict[str, Any], actor: str | None = None,
                          reason: str | None = None) -> TrafficPolicy:
        """Store a traffic policy once every version it names is loaded (and warmed): routing
        then never sends a request to a version that still has to load."""
        policy = TrafficPolicy.from_json(spec)
        model = await self._model(name)
        known = {v.number: v for v in model.versions}
        for number in sorted(policy.versions()):
            if number not in known or known[number].archived:
                state = "archived" if number in known else "unknown"
                raise Conflict(f"the policy names version {number} of {name!r}, which is {state}")
        for number in sorted(policy.versions()):
            await self._cache.load(known[number])
        await anyio.to_thread.run_sync(self._registry.set_policy, name, policy.to_json(), actor,
                                       reason)
        self._events.emit("traffic_change", model=name, policy=policy.to_json())
        return policy

    async def clear_traffic(self, name: str, actor: str | None = None) -> None:
        """Remove the policy: requests follow ``production`` again."""
        await self._model(name)  # 404 for an unknown model
        await anyio.to_thread.run_sync(self._registry.set_policy, name, None, actor)
        self._events.emit("traffic_change", model=name, policy=None)

    async def promote(self, name: str, ref: str | int, *, force: bool = False,
                      actor: str | None = None) -> VersionRecord:
        """Move ``production`` to a version (loaded and warmed first) and end the canary or
        shadow that staged it: a policy naming the promoted version is removed."""
        record = await self.set_alias(name, "production", ref, force=force, actor=actor)
        stored = await anyio.to_thread.run_sync(self._registry.get_policy, name)
        if stored is not None and record.number in TrafficPolicy.from_json(stored).versions():
            await self.clear_traffic(name, actor)
        return record

    async def rollback(self, name: str, actor: str | None = None) -> VersionRecord:
        """Return ``production`` to the version it pointed at before its last move."""
        events = await anyio.to_thread.run_sync(self._registry.list_events, name)
        moves = [e.details for e in events
                 if e.kind == "alias.set" and e.details.get("alias") == "production"]
        if not moves or moves[0].get("previous") is None:
            raise Conflict(f"{name!r} has no earlier production version to roll back to")
        return await self.set_alias(name, "production", int(moves[0]["previous"]), force=True,
                                    actor=actor)

    async def delete_alias(self, name: str, alias: str, actor: str | None = None) -> None:
        previous = (await self._model(name)).aliases.get(alias)
        await anyio.to_thread.run_sync(self._registry.delete_alias, name, alias, actor)
        if previous is not None:
            await self._retire(name, previous)

    async def delete_version(self, name: str, ref: str, actor: str | None = None) -> VersionRecord:
        version = await anyio.to_thread.run_sync(self._registry.get_version, name, ref)
        if version.pinned:
            raise Conflict(f"version {version.number} of {name!r} is pinned; unpin it first")
        deleted = await anyio.to_thread.run_sync(self._catalog.delete_version, name, ref, actor)
        await self._cache.unload(name, deleted.number)
        self._announce("unload", model=name, version=deleted.number)
        return deleted

    async def archive(self, name: str, ref: str, actor: str | None = None) -> VersionRecord:
        """Stop serving a version (404 saying it is archived) and unload it; refused while an
        alias, the traffic policy or a pin holds it."""
        version = await anyio.to_thread.run_sync(self._registry.set_archived, name, ref, True,
                                                 actor)
        await self._cache.unload(name, version.number)
        self._announce("unload", model=name, version=version.number)
        return version

    async def unarchive(self, name: str, ref: str, actor: str | None = None) -> VersionRecord:
        return await anyio.to_thread.run_sync(self._registry.set_archived, name, ref, False,
                                              actor)

    async def pin(self, name: str, ref: str, actor: str | None = None) -> VersionRecord:
        """Keep a version loaded: it is loaded now (it must fit the budget) and never evicted."""
        version = await anyio.to_thread.run_sync(self._registry.get_version, name, ref)
        if version.archived:
            raise Conflict(f"version {version.number} of {name!r} is archived")
        await self._cache.load(version, pin=True)
        self._events.emit("pin", model=name, version=version.number, pinned=True)
        pinned = await anyio.to_thread.run_sync(self._registry.set_pinned, name, version.number,
                                                True, actor)
        self._announce("pin", model=name, version=version.number)
        return pinned

    async def unpin(self, name: str, ref: str, actor: str | None = None) -> VersionRecord:
        version = await anyio.to_thread.run_sync(self._registry.set_pinned, name, ref, False, actor)
        self._cache.unpin(name, version.number)
        self._events.emit("pin", model=name, version=version.number, pinned=False)
        self._announce("unpin", model=name, version=version.number)
        return version

    async def load(self, version: VersionRecord) -> LoadedModel:
        return await self._cache.load(version)

    async def unload(self, name: str) -> list[int]:
        """Unload every loaded version of a model but the pinned ones (those need an unpin)."""
        model = await self._model(name)
        pinned = [v.number for v in model.versions if v.pinned]
        if pinned:
            raise Conflict(f"{name!r} has pinned version(s) {pinned}; unpin them first")
        self._announce("unload", model=name, version=None)
        return [number for _, number in await self._cache.unload(name)]

    async def preload(self, aliases: Iterable[str]) -> None:
        """Load pinned versions and the versions the given aliases point at."""
        wanted = set(aliases)
        for model in await anyio.to_thread.run_sync(self._registry.list_models):
            for version in model.versions:
                is_aliased = any(a in wanted for a in version.aliases)
                if version.archived or not (version.pinned or is_aliased):
                    continue
                try:
                    await self._cache.load(version, pin=version.pinned)
                except ModelManagerError as exc:
                    log.warning("preloading %s v%d failed: %s", model.name, version.number,
                                exc.message)

    async def apply(self, news: dict[str, Any]) -> None:
        """Do to this worker's loaded models what another worker announced it did to its own."""
        kind, name = news["kind"], str(news["model"])
        number: int | None = news.get("version")
        if kind == "unload":
            await self._cache.unload(name, number)
        elif kind == "pin":
            version = await anyio.to_thread.run_sync(self._registry.get_version, name, number)
            await self._cache.load(version, pin=True)
        elif kind == "unpin":
            self._cache.unpin(name, number or 0)
        elif kind == "retire":
            await self._retire(name, number or 0, announce=False)

    async def _retire(self, name: str, number: int, announce: bool = True) -> None:
        """Unload a version once drained, unless an alias or a pin still holds it."""
        model = await self._model(name)
        version = next((v for v in model.versions if v.number == number), None)
        if version is None or version.aliases or version.pinned:
            return
        await self._cache.unload(name, number)
        if announce:
            self._announce("retire", model=name, version=number)

    async def _model(self, name: str) -> ModelRecord:
        return await anyio.to_thread.run_sync(self._registry.get_model, name)


def warm(runtime: Runtime) -> None:
    """Run one prediction on a synthetic row so the first real request pays no warm-up cost."""
    try:
        runtime.predict({spec.name: _zeros(spec.datatype, spec.shape)
                         for spec in runtime.signature.inputs},
                        runtime.signature.output_names())
    except Exception as exc:  # a model may reject zeros; warming is best effort
        log.info("warm-up prediction failed (%s); serving anyway", exc)


def _zeros(datatype: str, shape: tuple[int, ...]) -> Array:
    dims = tuple(1 if d < 0 else d for d in shape)
    if datatype == "BYTES":
        return np.full(dims, b"", dtype=object)
    return np.zeros(dims, dtype=DATATYPES[datatype])
