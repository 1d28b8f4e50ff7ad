"""An in-memory store for tests; ``fetch`` materialises blobs in a private temp folder."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

from model_manager.errors import NotFound
from model_manager.store.base import StagedFile
from model_manager.types import Digest


class MemoryStore:
    """Blobs in a dict. Not for production: everything is lost with the process."""

    def __init__(self) -> None:
        self._data: dict[Digest, bytes] = {}
        self._scratch = Path(tempfile.mkdtemp(prefix="model-manager-mem-"))
        weakref.finalize(self, shutil.rmtree, self._scratch, ignore_errors=True)
        self.staging_dir = self._scratch / "tmp"
        self.staging_place = f"the memory store's scratch folder at {self._scratch}"

    def put(self, staged: StagedFile) -> None:
        self._data.setdefault(staged.sha256, staged.path.read_bytes())
        staged.discard()

    def fetch(self, digest: Digest) -> Path:
        if digest not in self._data:
            raise NotFound(f"artifact {digest} is missing from the memory store")
        path = self._scratch / digest
        if not path.exists():
            path.write_bytes(self._data[digest])
        return path

    def delete(self, digest: Digest) -> None:
        self._data.pop(digest, None)
        (self._scratch / digest).unlink(missing_ok=True)

    def exists(self, digest: Digest) -> bool:
        return digest in self._data

    def blobs(self) -> dict[Digest, int]:
        return {digest: len(data) for digest, data in self._data.items()}
