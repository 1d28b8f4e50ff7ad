"""Findings: what is wrong with one version, each with the evidence behind it. Pure functions.

``NEVER_USED``   no request since upload, uploaded longer ago than the grace period
``STALE``        no request for ``stale_after``
``SUPERSEDED``   older than ``production``, nothing routes to it, no request in the window
``DUPLICATE``    the same bytes (sha256) as another version
``FAILED_TO_LOAD`` / ``UNHEALTHY``   from health
``IDLE_IN_MEMORY`` loaded, unused for ``idle_after``
``SLOW``         p99 over the window above the version's threshold
``ERROR_PRONE``  error rate over the window above the version's threshold
``DRIFTED``      an input column's live values drifted from the version's reference
``ARCHIVED``     archived; cleanup purges it ``purge_after`` later
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from model_manager.clock import iso
from model_manager.errors import InvalidInput
from model_manager.health import Thresholds
from model_manager.registry import VersionRecord
from model_manager.serving import State, VersionState
from model_manager.settings import Settings, parse_duration

DAY = 86400.0
USAGE_DAYS = 90
"""Days of usage the registry keeps; older requests are not known."""

ARCHIVABLE = ("STALE", "SUPERSEDED", "NEVER_USED")
CODES = ("NEVER_USED", "STALE", "SUPERSEDED", "DUPLICATE", "FAILED_TO_LOAD", "UNHEALTHY",
         "IDLE_IN_MEMORY", "SLOW", "ERROR_PRONE", "DRIFTED", "ARCHIVED")


@dataclasses.dataclass(frozen=True)
class Limits:
    """The ages and windows findings are judged by (seconds)."""

    window: float = 7 * DAY
    stale_after: float = 30 * DAY
    never_used_grace: float = 7 * DAY
    idle_after: float = 3600.0
    purge_after: float = 14 * DAY

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.report_window, settings.stale_after, settings.never_used_grace,
                   settings.idle_after, settings.purge_after)

    def overridden(self, values: Mapping[str, Any]) -> Limits:
        """These limits with durations (``30d``, ``12h``, seconds) given by name."""
        changes = {}
        for field in dataclasses.fields(self):
            value = values.get(field.name)
            if value is None:
                continue
            try:
                if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                    raise ValueError(f"not a duration: {value!r}")
                seconds = parse_duration(value)
                if not 0 <= seconds < math.inf:
                    raise ValueError(f"not a duration: {value!r}")
            except ValueError as exc:
                raise InvalidInput(f"{field.name}: {exc}") from None
            changes[field.name] = seconds
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, float]:
        return {f"{f.name}_days": round(getattr(self, f.name) / DAY, 4)
                for f in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True)
class VersionFacts:
    """Everything known about one version when the report is made."""

    version: VersionRecord
    production: int | None
    routed_as: str | None
    """``route`` or ``shadow`` when the model's traffic policy names it; ``default route`` for
    the newest version of a model with neither a policy nor ``production``."""
    requests: int
    """In the window, as every figure below but first/last use."""
    errors: int
    """Failures that are the server's or the model's (bad input is the caller's)."""
    p99: float | None
    first_used: float | None
    last_used: float | None
    state: VersionState
    health: Mapping[str, Any]
    duplicates: tuple[tuple[str, int], ...] = ()

    @property
    def protected_by(self) -> list[str]:
        """What keeps cleanup away from this version."""
        held = [f"alias {a}" for a in self.version.aliases]
        if self.routed_as:
            held.append(f"traffic {self.routed_as}")
        if self.version.pinned:
            held.append("pinned")
        return held


@dataclasses.dataclass(frozen=True)
class Finding:
    code: str
    evidence: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "evidence": self.evidence}


def findings_of(facts: VersionFacts, limits: Limits, thresholds: Thresholds,
                now: float) -> list[Finding]:
    """Every finding that holds for the version, in the order of ``CODES``."""
    version = facts.version
    if version.archived:
        return [_archived(version, limits)]
    found = [*_usage_findings(facts, limits, now)]
    if facts.duplicates:
        found.append(Finding("DUPLICATE", {"sha256": version.sha256, "same_as": [
            {"model": m, "version": n} for m, n in facts.duplicates]}))
    found += _health_findings(facts)
    if facts.state.state is State.READY and facts.state.last_used is not None \
            and now - facts.state.last_used >= limits.idle_after:
        found.append(Finding("IDLE_IN_MEMORY", {
            "loaded_bytes": facts.state.size, "last_used": iso(facts.state.last_used),
            "idle_hours": round((now - facts.state.last_used) / 3600, 2),
            "idle_after_hours": round(limits.idle_after / 3600, 2)}))
    found += _performance_findings(facts, thresholds.for_version(version.metadata))
    drifted = facts.health.get("drifted_inputs")
    if drifted:
        found.append(Finding("DRIFTED", {"inputs": list(drifted)}))
    return found


def _usage_findings(facts: VersionFacts, limits: Limits, now: float) -> list[Finding]:
    version, found = facts.version, []
    age = now - version.created_at.timestamp()
    if facts.last_used is None and limits.never_used_grace <= age < USAGE_DAYS * DAY:
        found.append(Finding("NEVER_USED", {
            "uploaded": version.created_at.isoformat(), "age_days": round(age / DAY, 2),
            "grace_days": round(limits.never_used_grace / DAY, 2)}))
    unused_for = now - facts.last_used if facts.last_used is not None else age
    if unused_for >= limits.stale_after and (facts.last_used is not None or age >= USAGE_DAYS * DAY):
        found.append(Finding("STALE", {
            "last_used": iso(facts.last_used), "unused_days": round(unused_for / DAY, 2),
            "stale_after_days": round(limits.stale_after / DAY, 2)}))
    if facts.production is not None and version.number < facts.production \
            and not version.aliases and not facts.routed_as and facts.requests == 0:
        found.append(Finding("SUPERSEDED", {
            "production": facts.production, "requests_in_window": 0,
            "window_days": round(limits.window / DAY, 2)}))
    return found


def _health_findings(facts: VersionFacts) -> list[Finding]:
    if facts.state.state is State.FAILED:
        return [Finding("FAILED_TO_LOAD", {"reason": facts.state.reason})]
    if facts.health.get("status") == "unhealthy":
        return [Finding("UNHEALTHY", {"reasons": list(facts.health.get("reasons", []))})]
    return []


def _performance_findings(facts: VersionFacts, limits: Thresholds) -> list[Finding]:
    found = []
    if facts.p99 is not None and facts.p99 > limits.max_p99:
        found.append(Finding("SLOW", {"p99_ms": round(facts.p99 * 1000, 3),
                                      "threshold_ms": round(limits.max_p99 * 1000, 3),
                                      "requests": facts.requests}))
    rate = facts.errors / facts.requests if facts.requests else 0.0
    if rate > limits.max_error_rate:
        found.append(Finding("ERROR_PRONE", {"error_rate": round(rate, 4),
                                             "threshold": limits.max_error_rate,
                                             "errors": facts.errors, "requests": facts.requests}))
    return found


def _archived(version: VersionRecord, limits: Limits) -> Finding:
    archived_at = version.archived_at.timestamp() if version.archived_at else None
    return Finding("ARCHIVED", {
        "archived_at": iso(archived_at),
        "purge_at": iso(None if archived_at is None else archived_at + limits.purge_after)})


def is_purgeable(version: VersionRecord, limits: Limits, now: float) -> bool:
    """Archived at least ``purge_after`` ago (a version archived before archive times were
    kept counts as archived long ago)."""
    if not version.archived:
        return False
    return version.archived_at is None or now - version.archived_at.timestamp() >= limits.purge_after
