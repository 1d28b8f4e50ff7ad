"""A small filesystem of its own (tmpfs; the tests run as root) that a test can fill up."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

MiB = 1024**2


@contextlib.contextmanager
def small_disk(path: Path, megabytes: int) -> Iterator[Path]:
    """``path``, a tmpfs of ``megabytes`` MiB while the block runs; unmounted afterwards, also
    when the block fails."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(disk: Path, leave: int, name: str = "filler") -> Path:
    """A file that takes the disk's free space down to ``leave`` bytes."""
    filler = disk / name
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as f:
        for _ in range(max(free - leave, 0) // MiB):
            f.write(bytes(MiB))
        f.write(bytes(max(free - leave, 0) % MiB))
    return filler


def free_bytes(disk: Path) -> int:
    stats = os.statvfs(disk)
    return stats.f_bavail * stats.f_frsize
