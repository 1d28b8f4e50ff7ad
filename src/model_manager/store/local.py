"""A store in a local folder: ``<root>/sha256/ab/<digest>``, written by fsync-and-rename."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from model_manager.errors import NotFound, Unreachable
from model_manager.store.base import StagedFile
from model_manager.types import Digest

_DIGEST = re.compile(r"[0-9a-f]{64}")


class LocalStore:
    """Blobs in a folder. Writers rename a fully fsynced file into place, so a reader or a
    crash never sees half a blob."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def staging_dir(self) -> Path:
        """Temp files live on the same filesystem as the blobs, so the final rename is atomic."""
        return self.root / "tmp"

    @property
    def staging_place(self) -> str:
        return f"the store at {self.root}"

    def put(self, staged: StagedFile) -> None:
        target = self._path(staged.sha256)
        if target.exists():
            staged.discard()
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        if staged.path.parent.resolve() == self.staging_dir.resolve():
            os.replace(staged.path, target)
        else:
            self._copy_in(staged.path, target)
        _fsync_dir(target.parent)

    def _copy_in(self, source: Path, target: Path) -> None:
        """Copy a file staged elsewhere to ``target`` through a temp file (removed on failure)."""
        tmp = self.staging_dir / f"{target.name}.copy"
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(source, tmp)
            _fsync_file(tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def fetch(self, digest: Digest) -> Path:
        """The blob's path. Raises Unreachable when the store's folder itself is gone or cannot
        be read (a volume not mounted, or failing), NotFound when only the blob is missing."""
        path = self._path(digest)
        try:
            if path.is_file():
                return path
            if not self.root.is_dir():
                raise Unreachable(f"the artifact store at {self.root} is unreachable (the "
                                  f"folder is missing); retry once it is back")
        except OSError as exc:
            raise Unreachable(f"the artifact store at {self.root} cannot be read: "
                              f"{exc.strerror or exc}") from exc
        raise NotFound(f"artifact {digest} is missing from the store at {self.root}")

    def delete(self, digest: Digest) -> None:
        self._path(digest).unlink(missing_ok=True)

    def exists(self, digest: Digest) -> bool:
        return self._path(digest).is_file()

    def blobs(self) -> dict[Digest, int]:
        return {path.name: path.stat().st_size
                for path in (self.root / "sha256").glob("*/*") if _DIGEST.fullmatch(path.name)}

    def _path(self, digest: Digest) -> Path:
        if not _DIGEST.fullmatch(digest):
            raise NotFound(f"not a sha256 digest: {digest!r}")
        return self.root / "sha256" / digest[:2] / digest


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
