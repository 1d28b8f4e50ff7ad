"""``gather``: one consistent look at the fleet (registry, usage, cache, health, store) for the
report and the cleanup. Blocking: call it from a worker thread."""

from __future__ import annotations

import collections
import dataclasses
from datetime import UTC, datetime
from typing import Any

from model_manager.governance.findings import USAGE_DAYS, Limits, VersionFacts
from model_manager.health import HealthMonitor
from model_manager.registry import ModelRecord, Registry
from model_manager.serving import ModelCache
from model_manager.serving.traffic import TrafficPolicy
from model_manager.store import ArtifactStore
from model_manager.telemetry import UsageCounts, UsageRecorder
from model_manager.types import VersionKey


@dataclasses.dataclass(frozen=True)
class Fleet:
    models: list[ModelRecord]
    facts: dict[VersionKey, VersionFacts]
    policies: dict[str, TrafficPolicy]
    blobs: dict[str, int]
    """Every blob in the store: size by digest."""
    now: float

    @property
    def orphan_blobs(self) -> dict[str, int]:
        """Stored blobs that no version references (left by an interrupted delete)."""
        referenced = {v.sha256 for m in self.models for v in m.versions}
        return {d: size for d, size in self.blobs.items() if d not in referenced}


def gather(registry: Registry, store: ArtifactStore, usage: UsageRecorder, cache: ModelCache,
           health: HealthMonitor, limits: Limits, model: str | None = None) -> Fleet:
    now = registry.clock()
    models = [registry.get_model(model)] if model else registry.list_models()
    everything = registry.list_models() if model else models  # duplicates span every model
    by_digest: dict[str, list[VersionKey]] = collections.defaultdict(list)
    for m in everything:
        for v in m.versions:
            by_digest[v.sha256].append((m.name, v.number))
    policies = {}
    facts = {}
    window_start = datetime.fromtimestamp(now - limits.window, UTC).date()
    for m in models:
        stored = registry.get_policy(m.name)
        if stored is not None:
            policies[m.name] = TrafficPolicy.from_json(stored)
        routed = _routed(policies.get(m.name))
        if m.name not in policies and "production" not in m.aliases and m.latest is not None:
            routed[m.latest.number] = "default route"  # what a request without a version gets
        counts = usage.usage(m.name, USAGE_DAYS)
        for v in m.versions:
            days = counts.get(v.number, {})
            window = _merged(c for day, c in days.items() if day >= window_start)
            ever = _merged(days.values())
            key = (m.name, v.number)
            facts[key] = VersionFacts(
                version=v, production=m.aliases.get("production"), routed_as=routed.get(v.number),
                requests=window.requests, errors=_server_errors(window),
                p99=window.quantile(0.99), first_used=ever.first_used, last_used=ever.last_used,
                state=cache.state_of(*key), health=health.version_health(v),
                duplicates=tuple(k for k in by_digest[v.sha256] if k != key))
    return Fleet(models, facts, policies, store.blobs(), now)


def _routed(policy: TrafficPolicy | None) -> dict[int, str]:
    if policy is None:
        return {}
    return {**{s.version: "shadow" for s in policy.shadows},
            **{r.version: "route" for r in policy.routes}}


def _merged(counts: Any) -> UsageCounts:
    total = UsageCounts()
    for c in counts:
        total.merge(c)
    return total


def _server_errors(counts: UsageCounts) -> int:
    return sum(n for outcome, n in counts.outcomes.items() if outcome not in ("ok", "bad_input"))

