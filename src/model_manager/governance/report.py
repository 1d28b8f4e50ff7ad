"""The governance report: totals, then each model with its versions and their findings."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from model_manager.clock import iso
from model_manager.governance.facts import Fleet
from model_manager.governance.findings import ARCHIVABLE, Finding, Limits, findings_of
from model_manager.health import Thresholds
from model_manager.serving import State


def build_report(fleet: Fleet, limits: Limits, thresholds: Thresholds,
                 memory_budget: int, plans: Mapping[tuple[str, int], datetime] | None = None
                 ) -> dict[str, Any]:
    """``plans``: when the scheduled cleanup will archive each version it planned to."""
    findings = {key: findings_of(f, limits, thresholds, fleet.now) for key, f in fleet.facts.items()}
    counted = collections.Counter(x.code for found in findings.values() for x in found)
    versions = [f for f in fleet.facts.values()]
    loaded = [f for f in versions if f.state.state is State.READY]
    return {
        "generated_at": iso(fleet.now),
        "limits": limits.to_json(),
        "totals": {
            "models": len(fleet.models),
            "versions": sum(not f.version.archived for f in versions),
            "archived_versions": sum(f.version.archived for f in versions),
            "versions_in_use": sum(f.requests > 0 for f in versions),
            "loaded_versions": len(loaded),
            "loaded_bytes": sum(f.state.size or 0 for f in loaded),
            "memory_budget_bytes": memory_budget,
            "storage_bytes": sum(_blob_sizes(fleet).values()) + sum(fleet.orphan_blobs.values()),
            "reclaimable_bytes": _reclaimable(fleet, findings),
            "findings": {code: counted[code] for code in sorted(counted)},
        },
        "models": [_model(fleet, name, findings, plans or {})
                   for name in (m.name for m in fleet.models)],
        "orphan_blobs": [{"sha256": d, "size": n} for d, n in sorted(fleet.orphan_blobs.items())],
    }


def _model(fleet: Fleet, name: str, findings: dict[Any, list[Finding]],
           plans: Mapping[tuple[str, int], datetime]) -> dict[str, Any]:
    model = next(m for m in fleet.models if m.name == name)
    policy = fleet.policies.get(name)
    production = model.aliases.get("production")
    facts = [fleet.facts[name, v.number] for v in model.versions]
    return {
        "name": name, "latest": model.latest.number if model.latest else None,
        "production": production,
        "canary": [r.version for r in policy.routes if r.version != production and r.weight]
        if policy else [],
        "shadows": [s.version for s in policy.shadows] if policy else [],
        "requests": sum(f.requests for f in facts), "errors": sum(f.errors for f in facts),
        "versions": [{
            "version": f.version.number, "created_at": f.version.created_at.isoformat(),
            "archived": f.version.archived,
            "archived_at": f.version.archived_at.isoformat() if f.version.archived_at else None,
            "size": f.version.size, "sha256": f.version.sha256, "state": f.state.state.value,
            "loaded_bytes": f.state.size, "requests": f.requests, "errors": f.errors,
            "p99_ms": None if f.p99 is None else round(f.p99 * 1000, 3),
            "last_used": iso(f.last_used), "protected_by": f.protected_by,
            "health": {"status": f.health.get("status"), "reasons": list(f.health.get("reasons", []))},
            "findings": [x.to_json() for x in findings[name, f.version.number]],
            "archive_planned_after": iso(plans[name, f.version.number].timestamp())
            if (name, f.version.number) in plans else None,
        } for f in facts],
    }


def _blob_sizes(fleet: Fleet) -> dict[str, int]:
    return {f.version.sha256: f.version.size for f in fleet.facts.values()}


def _reclaimable(fleet: Fleet, findings: dict[Any, list[Finding]]) -> int:
    """Bytes cleanup would free in the end: blobs whose every version is unprotected and
    archived or archivable (a version outside the report, sharing the blob, keeps it, as in
    the cleanup plan), and orphan blobs."""
    holders: dict[str, list[bool]] = collections.defaultdict(list)
    for key, f in fleet.facts.items():
        goes = not f.protected_by and (f.version.archived or any(
            x.code in ARCHIVABLE for x in findings[key]))
        holders[f.version.sha256].append(goes)
        holders[f.version.sha256] += [False for k in f.duplicates if k not in fleet.facts]
    sizes = _blob_sizes(fleet)
    return (sum(sizes[d] for d, goes in holders.items() if all(goes))
            + sum(fleet.orphan_blobs.values()))
