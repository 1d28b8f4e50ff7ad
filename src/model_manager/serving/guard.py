"""``CanaryGuard``: takes a canary route out of service when it breaks the model's thresholds.

Every few seconds, for each model with an ``auto_rollback`` setting and a traffic policy, each
route that is not the ``production`` version and still has weight is judged on the requests it
served since the policy was set. A route that breaks a threshold gets weight 0, its share goes to
``production``, and the change is audited (``traffic.set`` by ``auto-rollback``, with the reason)
and logged as an ``auto_rollback`` event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread

from model_manager.registry import Registry
from model_manager.serving.lifecycle import VersionLifecycle
from model_manager.serving.model_settings import RollbackGuard, SettingsCache
from model_manager.serving.traffic import Route, TrafficPolicy
from model_manager.telemetry import EventLog, UsageRecorder

log = logging.getLogger(__name__)

ACTOR = "auto-rollback"


class CanaryGuard:
    def __init__(self, registry: Registry, settings: SettingsCache, usage: UsageRecorder,
                 lifecycle: VersionLifecycle, events: EventLog,
                 clock: Callable[[], float] = time.time) -> None:
        self._registry = registry
        self._settings = settings
        self._usage = usage
        self._lifecycle = lifecycle
        self._events = events
        self._clock = clock

    async def check(self) -> None:
        """Judge every guarded model's canary routes once."""
        for name, guard in self._settings.guarded().items():
            await self._check_model(name, guard)

    async def _check_model(self, name: str, guard: RollbackGuard) -> None:
        stored = await anyio.to_thread.run_sync(self._registry.get_policy, name)
        since = await anyio.to_thread.run_sync(self._registry.policy_since, name)
        if stored is None or since is None:
            return
        model = await anyio.to_thread.run_sync(self._registry.get_model, name)
        production = model.aliases.get("production")
        if production is None:
            return
        policy = TrafficPolicy.from_json(stored)
        seconds = max(self._clock() - since.timestamp(), 0.0)
        for route in policy.routes:
            if route.version == production or route.weight == 0:
                continue
            stats = self._usage.window((name, route.version), seconds)
            reason = guard.breach(stats)
            if reason is not None:
                await self._roll_back(name, policy, route, production, reason)
                return  # judge the new policy afresh next round

    async def _roll_back(self, name: str, policy: TrafficPolicy, canary: Route, production: int,
                         reason: str) -> None:
        spec = _without(policy, canary, production)
        await self._lifecycle.set_traffic(name, spec, actor=ACTOR, reason=reason)
        self._events.emit("auto_rollback", model=name, version=canary.version,
                          weight=canary.weight, production=production, reason=reason)
        log.warning("auto-rollback: %s version %d taken out of traffic: %s", name, canary.version,
                    reason)


def _without(policy: TrafficPolicy, canary: Route, production: int) -> dict[str, Any]:
    """The policy with the canary's weight moved to ``production``."""
    routes = [r for r in policy.routes if r.version not in (canary.version, production)]
    served = next((r.weight for r in policy.routes if r.version == production), 0)
    routes += [Route(production, served + canary.weight), Route(canary.version, 0)]
    spec = policy.to_json()
    spec["routes"] = [{"version": r.version, "weight": r.weight} for r in routes]
    spec["shadows"] = [s for s in spec["shadows"] if s["version"] != production]
    return spec
