"""Free disk space where the server writes: measured for status and metrics, checked before an
upload is accepted, and named in the error when a write runs out of it."""

from __future__ import annotations

import dataclasses
import errno
import shutil
from pathlib import Path
from typing import Any

from model_manager.errors import InsufficientStorage
from model_manager.sizes import human_size

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


@dataclasses.dataclass(frozen=True)
class DiskSpace:
    """The filesystem holding ``path``: its size and the bytes still free to this process."""

    path: Path
    free: int
    total: int

    @property
    def free_fraction(self) -> float:
        return self.free / self.total if self.total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "free_bytes": self.free, "total_bytes": self.total,
                "free": human_size(self.free)}


def measure(path: Path) -> DiskSpace:
    """The space of the filesystem ``path`` is (or will be, once made) on: a folder not yet made
    is measured at its nearest existing parent."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    usage = shutil.disk_usage(existing)
    return DiskSpace(path, usage.free, usage.total)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused for want of space (or of the user's disk quota)."""
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


def no_room(place: str, path: Path, needed: int | None, written: int = 0) -> InsufficientStorage:
    """The error for an upload that does not fit in ``place`` (``"the store at /srv/store"``),
    with its free space now; ``needed`` is the upload's size when known, else it needed more than
    the ``written`` bytes."""
    free = human_size(measure(path).free)
    need = human_size(needed) if needed is not None else f"more than {human_size(written)}"
    return InsufficientStorage(f"{place} has {free} free; the upload needs {need}. Free space "
                               f"there (or delete unused versions) and upload again")


def check_room(place: str, path: Path, needed: int) -> None:
    """Raise InsufficientStorage now if ``needed`` bytes do not fit in ``place``."""
    if measure(path).free < needed:
        raise no_room(place, path, needed)
