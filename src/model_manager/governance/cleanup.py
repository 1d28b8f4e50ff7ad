"""Cleanup: the actions the report's findings call for, planned (dry run) or carried out.

- ``unload`` an IDLE_IN_MEMORY version (frees memory);
- ``archive`` a STALE, SUPERSEDED or NEVER_USED version (no longer served; ``unarchive`` undoes it);
- ``purge`` a version archived ``purge_after`` ago: its row goes, then its blob if no other
  version references it;
- ``delete_blob`` an orphan blob, which an interrupted purge leaves behind.

A version that an alias, a traffic route or shadow points at, or that is pinned, is never touched.
Each step is one registry transaction, or a blob deletion after the row that referenced it is
gone, so a crash leaves no version pointing at a missing blob, and running cleanup again
finishes the job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from model_manager.governance.facts import Fleet
from model_manager.governance.findings import ARCHIVABLE, Limits, findings_of, is_purgeable
from model_manager.health import Thresholds

ACTION_FINDINGS = {"unload": ("IDLE_IN_MEMORY",), "archive": ARCHIVABLE, "purge": ("ARCHIVED",)}


@dataclasses.dataclass
class Action:
    action: str
    model: str | None
    version: int | None
    finding: str
    reclaims_bytes: int
    """Storage freed (memory, for ``unload``)."""
    sha256: str | None = None
    done: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plan(fleet: Fleet, limits: Limits, thresholds: Thresholds,
         findings: Collection[str] | None = None, model: str | None = None) -> list[Action]:
    """The actions to take, in a safe order: unload, archive, purge, then orphan blobs."""
    actions: list[Action] = []
    leaving: dict[str, list[bool]] = {}
    """Per blob: whether each version that references it is purged by this plan."""
    for key, facts in fleet.facts.items():
        version = facts.version
        codes = [x.code for x in findings_of(facts, limits, thresholds, fleet.now)]
        if findings is not None:
            codes = [c for c in codes if c in findings]
        purge = not facts.protected_by and "ARCHIVED" in codes \
            and is_purgeable(version, limits, fleet.now)
        holders = leaving.setdefault(version.sha256, [])
        holders.append(purge)
        holders += [False for k in facts.duplicates if k not in fleet.facts]  # outside the plan
        if facts.protected_by:
            continue
        if "IDLE_IN_MEMORY" in codes:
            actions.append(Action("unload", *key, "IDLE_IN_MEMORY", facts.state.size or 0))
        archivable = [c for c in codes if c in ARCHIVABLE]
        if archivable:
            actions.append(Action("archive", *key, archivable[0], 0, version.sha256))
        if purge:
            actions.append(Action("purge", *key, "ARCHIVED", version.size, version.sha256))
    credited: set[str] = set()
    for action in actions:  # a blob is freed once, by the purge of the last version using it
        if action.action == "purge":
            digest = action.sha256 or ""
            if not all(leaving[digest]) or digest in credited:
                action.reclaims_bytes = 0
            credited.add(digest)
    if model is None and (findings is None or "ORPHAN_BLOB" in findings):
        actions += [Action("delete_blob", None, None, "ORPHAN_BLOB", size, digest)
                    for digest, size in sorted(fleet.orphan_blobs.items())]
    order = ["unload", "archive", "purge", "delete_blob"]
    return sorted(actions, key=lambda a: order.index(a.action))
