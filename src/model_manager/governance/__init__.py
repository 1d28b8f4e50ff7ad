"""Govern the fleet: the report of what is in use, stale, redundant or unhealthy, and cleanup."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread
import sqlalchemy as sa

from model_manager.catalog import Catalog
from model_manager.errors import InvalidInput, ModelManagerError
from model_manager.governance.cleanup import Action, plan
from model_manager.governance.facts import Fleet, gather
from model_manager.governance.findings import CODES, Finding, Limits, findings_of
from model_manager.governance.report import build_report
from model_manager.health import HealthMonitor, Thresholds
from model_manager.registry import Registry
from model_manager.registry import schema as t
from model_manager.serving import ModelCache
from model_manager.telemetry import EventLog, UsageRecorder
from model_manager.telemetry.audit import AuditTrail

__all__ = ["CODES", "Action", "Finding", "Fleet", "Governance", "Limits", "findings_of"]


class Governance:
    def __init__(self, catalog: Catalog, cache: ModelCache, usage: UsageRecorder,
                 health: HealthMonitor, thresholds: Thresholds, limits: Limits,
                 memory_budget: int, events: EventLog, audit: AuditTrail,
                 notice: float = 0.0) -> None:
        self._catalog = catalog
        self._audit = audit
        self._registry = catalog.registry
        self._cache = cache
        self._usage = usage
        self._health = health
        self._thresholds = thresholds
        self.limits = limits
        self._budget = memory_budget
        self._events = events
        self._notice = notice
        self._plans = CleanupPlans(self._registry)

    async def report(self, overrides: Mapping[str, Any] | None = None,
                     model: str | None = None) -> dict[str, Any]:
        limits = self.limits.overridden(overrides or {})
        fleet = await self._gather(limits, model)
        plans = await anyio.to_thread.run_sync(self._plans.all)
        return build_report(fleet, limits, self._thresholds, self._budget, plans)

    async def cleanup(self, *, apply: bool, overrides: Mapping[str, Any] | None = None,
                      model: str | None = None, findings: Collection[str] | None = None,
                      actor: str | None = None) -> dict[str, Any]:
        """Plan the cleanup; with ``apply``, carry out each action (a failed one is reported
        and the rest go on)."""
        unknown = set(findings or ()) - {*CODES, "ORPHAN_BLOB"}
        if unknown:
            raise InvalidInput(f"unknown findings {sorted(unknown)}; known: "
                               f"{', '.join([*CODES, 'ORPHAN_BLOB'])}")
        limits = self.limits.overridden(overrides or {})
        fleet = await self._gather(limits, model)
        actions = plan(fleet, limits, self._thresholds, findings, model)
        if apply:
            for action in actions:
                await self._apply(action, actor)
        counted = [a for a in actions if not apply or a.done]
        return {"dry_run": not apply, "limits": limits.to_json(),
                "actions": [a.to_json() for a in actions],
                "storage_bytes": sum(a.reclaims_bytes for a in counted if a.action != "unload"),
                "memory_bytes": sum(a.reclaims_bytes for a in counted if a.action == "unload")}

    async def scheduled(self) -> None:
        """The periodic cleanup (``--cleanup-interval``), applied with the server's limits. A
        version it would archive is first planned: its owners are told (``cleanup_planned``)
        and it is archived on a later run, ``--cleanup-notice`` after, if it still qualifies;
        a version used again in the meantime leaves the plan."""
        fleet = await self._gather(self.limits, None)
        actions = plan(fleet, self.limits, self._thresholds, None, None)
        plans = await anyio.to_thread.run_sync(self._plans.all)
        now = self._registry.now()
        chosen, planned = [], set()
        for action in actions:
            key = (action.model or "", action.version or 0)
            if action.action == "archive" and self._notice > 0:
                planned.add(key)
                after = plans.get(key)
                if after is None:
                    after = now + timedelta(seconds=self._notice)
                    await anyio.to_thread.run_sync(self._plans.add, key, action.finding, now,
                                                   after)
                    self._events.emit("cleanup_planned", model=key[0], version=key[1],
                                      finding=action.finding, archive_after=after.isoformat(),
                                      reason=f"{action.finding}: to be archived after "
                                             f"{after.isoformat(timespec='seconds')}")
                if after > now:
                    continue
            chosen.append(action)
        for action in chosen:
            await self._apply(action, "scheduled-cleanup")
        done = {(a.model or "", a.version or 0) for a in chosen if a.action == "archive" and a.done}
        await anyio.to_thread.run_sync(self._plans.keep_only, planned - done)
        if chosen:
            counted = [a for a in chosen if a.done]
            self._events.emit("cleanup", actions=len(chosen),
                              storage_bytes=sum(a.reclaims_bytes for a in counted
                                                if a.action != "unload"),
                              memory_bytes=sum(a.reclaims_bytes for a in counted
                                               if a.action == "unload"))

    async def _gather(self, limits: Limits, model: str | None) -> Fleet:
        return await anyio.to_thread.run_sync(
            gather, self._registry, self._catalog.store, self._usage, self._cache, self._health,
            limits, model)

    async def _apply(self, action: Action, actor: str | None) -> None:
        try:
            await self._carry_out(action, actor)
        except ModelManagerError as exc:
            action.error = exc.message
            return
        action.done = True
        self._events.emit("cleanup_action", action=action.action, model=action.model,
                          version=action.version, finding=action.finding,
                          bytes=action.reclaims_bytes)

    async def _carry_out(self, action: Action, actor: str | None) -> None:
        model, number = action.model or "", action.version or 0
        details = {"version": number, "reason": action.finding}
        if action.action == "unload":
            await self._cache.unload(model, number)
            await anyio.to_thread.run_sync(self._audit.record, model, "version.unloaded",
                                           details, actor)
        elif action.action == "archive":
            await anyio.to_thread.run_sync(self._registry.set_archived, model, number, True,
                                           actor, action.finding)
            await self._cache.unload(model, number)
        elif action.action == "purge":
            await anyio.to_thread.run_sync(self._catalog.purge_version, model, number, actor)
        else:
            await anyio.to_thread.run_sync(self._catalog.delete_orphan_blob, action.sha256 or "")


class CleanupPlans:
    """The archives the scheduled cleanup has planned (``cleanup_plans``)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def all(self) -> dict[tuple[str, int], datetime]:
        """When each planned version may be archived."""
        with self._registry.engine.connect() as conn:
            rows = conn.execute(sa.select(t.cleanup_plans)).all()
        return {(r.model, r.version): r.archive_after for r in rows}

    def add(self, key: tuple[str, int], finding: str, now: datetime, after: datetime) -> None:
        with self._registry.writing() as conn:
            conn.execute(t.cleanup_plans.insert().values(model=key[0], version=key[1],
                                                         finding=finding, planned_at=now,
                                                         archive_after=after))

    def keep_only(self, keys: set[tuple[str, int]]) -> None:
        """Drop the plans of versions no longer planned (archived, or used again)."""
        with self._registry.writing() as conn:
            for row in conn.execute(sa.select(t.cleanup_plans.c.model, t.cleanup_plans.c.version)):
                if (row.model, row.version) not in keys:
                    conn.execute(t.cleanup_plans.delete().where(
                        t.cleanup_plans.c.model == row.model,
                        t.cleanup_plans.c.version == row.version))
