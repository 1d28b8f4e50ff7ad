"""``WholeServer``: figures that live in each worker's memory, answered for the whole server.

The last hour's counts, the model cache and its history are kept in memory by each worker
process. With several workers, a read asks the others (``Siblings.ask``), waits at most
``WAIT`` seconds for their answers, and merges them with its own, so the dashboard and the API
show the server whichever worker answers. The usage in the registry is read after every worker
has flushed what it counted. With one process, each read is just that process's figures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread

from model_manager.clock import iso
from model_manager.devices import Accelerator
from model_manager.serving import LoadedModel, ModelCache
from model_manager.telemetry import CacheHistory, UsageRecorder
from model_manager.telemetry.cache_history import KINDS
from model_manager.telemetry.counts import UsageCounts
from model_manager.telemetry.recent import Series, Totals
from model_manager.types import VersionKey
from model_manager.workers import Siblings

WAIT = 2.0
"""Seconds a read waits for the other workers' answers (they answer within a tick)."""


class WholeServer:
    def __init__(self, siblings: Siblings | None, usage: UsageRecorder, cache: ModelCache,
                 history: CacheHistory, clock: Callable[[], float],
                 flush: Callable[[], Awaitable[None]],
                 accelerator: Accelerator | None = None) -> None:
        self._siblings = siblings
        self._accelerator = accelerator
        self._usage = usage
        self._cache = cache
        self._history = history
        self._clock = clock
        self._flush = flush
        self._answers: dict[str, Callable[..., Awaitable[Any]]] = {
            "flush": self._flushed, "totals": self._own_totals, "recent": self._own_recent,
            "cache": self._own_cache}

    # ---- reads for the API -------------------------------------------------------------------

    async def flushed(self) -> None:
        """Return once every other worker has written the usage it counted (or after WAIT)."""
        await self._ask("flush")

    async def recent_totals(self) -> tuple[float, dict[VersionKey, Totals]]:
        now, totals = await anyio.to_thread.run_sync(self._usage.recent_totals)
        for answer in await self._ask("totals"):
            for model, version, hour, day in answer:
                theirs = Totals(UsageCounts.from_json(hour), UsageCounts.from_json(day))
                totals.setdefault((model, version), Totals()).merge(theirs)
        return now, totals

    async def recent(self, span: str, model: str) -> tuple[float, dict[VersionKey, Series]]:
        now, recent = await anyio.to_thread.run_sync(self._usage.recent, span, model)
        for answer in await self._ask("recent", span=span, model=model):
            for version, buckets in answer:
                merged = {start: counts for start, counts in recent.get((model, version), [])}
                for start, counts in buckets:
                    merged.setdefault(start, UsageCounts()).merge(UsageCounts.from_json(counts))
                recent[(model, version)] = sorted(merged.items())
        return now, recent

    async def cache_state(self) -> dict[str, Any]:
        """``GET /api/cache``: every worker's loaded versions (with its pid), bytes, events and
        counts per minute, merged."""
        parts = [await self._own_cache(), *await self._ask("cache")]
        per_minute: dict[str, dict[str, int]] = {}
        for part in parts:
            for minute in part["per_minute"]:
                counts = per_minute.setdefault(minute["start"], dict.fromkeys(KINDS, 0))
                for kind in KINDS:
                    counts[kind] += minute.get(kind, 0)
        return {"until": iso(self._clock(), "milliseconds"), "budget_bytes": self._cache.budget,
                "used_bytes": sum(p["used_bytes"] for p in parts),
                "device": self._device_state(parts),
                "loaded": sorted((e for p in parts for e in p["loaded"]),
                                 key=lambda e: (-e["bytes"], e["model"], e["version"])),
                "events": sorted((e for p in parts for e in p["events"]), key=lambda e: e["at"]),
                "per_minute": [{"start": start, **counts}
                               for start, counts in sorted(per_minute.items())]}

    def _device_state(self, parts: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The accelerator's budget and what is held there (None: models run on the CPU). With
        several workers, each holds its own context and share of the budget: these are sums."""
        if self._accelerator is None:
            return None
        workers = len(parts)
        return {"device": self._accelerator.device, "name": self._accelerator.name,
                "budget_bytes": self._accelerator.budget * workers,
                "used_bytes": sum(p.get("device_used_bytes", 0) for p in parts),
                "context_bytes": sum(p.get("device_context_bytes", 0) for p in parts),
                "process_bytes": sum(p.get("device_process_bytes", 0) for p in parts)}

    # ---- the other workers' side -------------------------------------------------------------

    async def respond(self, question: dict[str, Any]) -> None:
        """Answer a question another worker asked (``Siblings.ask``)."""
        assert self._siblings is not None
        data = await self._answers[question["what"]](**question.get("args", {}))
        self._siblings.answer(question["number"], data)

    async def _ask(self, what: str, **args: Any) -> list[Any]:
        if self._siblings is None:
            return []
        number = self._siblings.ask(what, **args)
        deadline = time.monotonic() + WAIT
        while True:
            answers, complete = self._siblings.answers(number)
            if complete or time.monotonic() > deadline:
                return answers
            await asyncio.sleep(0.02)

    async def _flushed(self) -> None:
        await self._flush()

    async def _own_totals(self) -> list[Any]:
        _, totals = await anyio.to_thread.run_sync(self._usage.recent_totals)
        return [[*key, t.hour.to_json(), t.day.to_json()] for key, t in totals.items()]

    async def _own_recent(self, span: str, model: str) -> list[Any]:
        _, recent = await anyio.to_thread.run_sync(self._usage.recent, span, model)
        return [[key[1], [[start, counts.to_json()] for start, counts in series]]
                for key, series in recent.items()]

    async def _own_cache(self) -> dict[str, Any]:
        pid = self._siblings.pid if self._siblings is not None else None
        device = {}
        if self._accelerator is not None:
            process = await anyio.to_thread.run_sync(self._accelerator.memory.used)
            device = {"device_used_bytes": self._cache.device_used,
                      "device_context_bytes": self._accelerator.context_bytes,
                      "device_process_bytes": process}
        return {"used_bytes": self._cache.used, **device,
                "loaded": [_entry(e, pid) for e in self._cache.loaded()],
                "events": self._history.events(),
                "per_minute": self._history.per_minute(self._clock())}


def _entry(entry: LoadedModel, pid: int | None) -> dict[str, Any]:
    return {"model": entry.key[0], "version": entry.key[1], "bytes": entry.size,
            "device_bytes": entry.device_size,
            "pinned": entry.pinned, "in_flight": entry.in_flight,
            "loaded_at": iso(entry.loaded_at, "milliseconds"),
            "last_used": iso(entry.last_used, "milliseconds"),
            **({"worker_pid": pid} if pid is not None else {})}
