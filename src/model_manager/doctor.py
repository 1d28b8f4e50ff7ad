"""``doctor``: check that the registry and the artifact store agree, and repair what is safe.

Checks: every version's blob (and its compiled twin's) is in the store with the digest it is
named by; no blob is left that no version references (an interrupted delete leaves one); no
upload's temp file is left in the staging folder (an interrupted upload leaves one). Orphan
blobs and stale temp files are safe to delete; a missing or corrupt blob is not repairable here
(restore it from a backup, or delete the version).

It also warns, without counting it a problem, when the data dir or the store's staging folder
has less than ``LOW_FREE_FRACTION`` of its filesystem free, or less than the largest version's
size (the next upload of that size would be refused).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_manager.errors import NotFound
from model_manager.registry import Registry
from model_manager.sizes import human_size
from model_manager.store import ArtifactStore
from model_manager.store.space import DiskSpace, measure

LOW_FREE_FRACTION = 0.10


@dataclasses.dataclass(frozen=True)
class Problem:
    kind: str
    """missing_blob, corrupt_blob, orphan_blob or temp_file."""
    detail: str
    target: str
    """The digest or file it is about."""

    @property
    def repairable(self) -> bool:
        return self.kind in ("orphan_blob", "temp_file")

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "repairable": self.repairable}


@dataclasses.dataclass(frozen=True)
class DiskWarning:
    place: str
    """data_dir or staging (where uploads are written)."""
    space: DiskSpace
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"place": self.place, **self.space.to_json(), "detail": self.detail}


def disk_warnings(registry: Registry, places: Mapping[str, Path]) -> list[DiskWarning]:
    """A warning for each place with less than ``LOW_FREE_FRACTION`` free, or less free than the
    largest registered version's size."""
    largest = max((v.size for m in registry.list_models() for v in m.versions), default=0)
    warnings = []
    for place, path in places.items():
        space = measure(path)
        reasons = []
        if space.free_fraction < LOW_FREE_FRACTION:
            reasons.append(f"less than {LOW_FREE_FRACTION:.0%} of {human_size(space.total)}")
        if space.free < largest:
            reasons.append(f"less than the largest version ({human_size(largest)}), so an "
                           f"upload that size would be refused")
        if reasons:
            warnings.append(DiskWarning(place, space, f"{human_size(space.free)} free: "
                                        f"{'; '.join(reasons)}"))
    return warnings


def examine(registry: Registry, store: ArtifactStore, temp_older_than: float = 0.0) -> list[Problem]:
    """Everything that does not agree; temp files younger than ``temp_older_than`` seconds are
    taken for uploads in progress."""
    problems: list[Problem] = []
    referenced: set[str] = set()
    for model in registry.list_models():
        for version in model.versions:
            for digest in (version.sha256, version.compiled_sha256):
                if digest is None:
                    continue
                referenced.add(digest)
                problem = _check_blob(store, digest, f"{model.name} v{version.number}")
                if problem is not None:
                    problems.append(problem)
    problems += [Problem("orphan_blob", f"{human_size(size)} that no version references", digest)
                 for digest, size in sorted(store.blobs().items()) if digest not in referenced]
    staging = store.staging_dir
    if staging.is_dir():
        cutoff = time.time() - temp_older_than
        problems += [Problem("temp_file", "left by an interrupted upload", str(path))
                     for path in sorted(staging.rglob("*"))
                     if path.is_file() and path.stat().st_mtime <= cutoff]
    return problems


def repair(store: ArtifactStore, registry: Registry, problems: list[Problem]) -> list[Problem]:
    """Delete orphan blobs (if still unreferenced) and temp files; the repaired problems."""
    repaired = []
    for problem in problems:
        if problem.kind == "orphan_blob" and not registry.is_blob_referenced(problem.target):
            store.delete(problem.target)
            repaired.append(problem)
        elif problem.kind == "temp_file":
            Path(problem.target).unlink(missing_ok=True)
            repaired.append(problem)
    return repaired


def _check_blob(store: ArtifactStore, digest: str, owner: str) -> Problem | None:
    try:
        path = store.fetch(digest)
    except NotFound:
        return Problem("missing_blob", f"{owner}'s blob is not in the store", digest)
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    if sha.hexdigest() != digest:
        return Problem("corrupt_blob", f"{owner}'s blob has digest {sha.hexdigest()}", digest)
    return None
