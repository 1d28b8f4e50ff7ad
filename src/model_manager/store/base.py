"""The ``ArtifactStore`` protocol and the staging of uploads.

An upload is first *staged*: streamed to a local temporary file while it is hashed and sized,
so it is never held whole in memory and can be inspected before it is accepted. Only then is it
``put`` into the store under its digest. A crash before ``put`` leaves a temp file, never a blob.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from model_manager.errors import TooLarge
from model_manager.sizes import human_size
from model_manager.store.space import is_disk_full, no_room
from model_manager.types import Digest


@dataclasses.dataclass(frozen=True)
class StagedFile:
    """A fully written local file with its sha256 and size."""

    path: Path
    sha256: Digest
    size: int

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class ArtifactStore(Protocol):
    """Content-addressed blobs, keyed by the sha256 of their bytes."""

    @property
    def staging_dir(self) -> Path:
        """A local folder where uploads are staged before ``put``."""

    @property
    def staging_place(self) -> str:
        """How messages name where staged bytes are written: ``the store at <folder>``, or
        ``the store's cache at <folder>`` for a remote store."""

    def put(self, staged: StagedFile) -> None:
        """Store the staged file's bytes under its digest (a no-op if already there)."""

    def fetch(self, digest: Digest) -> Path:
        """A local path holding the blob's bytes, for a runtime to load. Raises NotFound."""

    def delete(self, digest: Digest) -> None:
        """Remove the blob; a missing blob is not an error."""

    def exists(self, digest: Digest) -> bool:
        """Whether the blob is stored."""

    def blobs(self) -> dict[Digest, int]:
        """Every stored blob's size in bytes, by digest."""


class Stager:
    """One upload being written to a temp file in a folder, hashed and sized as it arrives, so
    it is written once and never held whole in memory.

    ``write`` raises TooLarge once more than ``limit`` bytes arrive, and InsufficientStorage
    (naming ``place`` and its free space) when the disk fills; either way the file is removed
    first. ``expected`` is the upload's size when the caller knows it, for that message.
    """

    def __init__(self, path: Path, out: BinaryIO, limit: int, place: str,
                 expected: int | None) -> None:
        self.path, self.limit, self.place, self.expected = path, limit, place, expected
        self.size = 0
        self._out = out
        self._digest = hashlib.sha256()

    @classmethod
    def open(cls, directory: Path, limit: int, place: str, expected: int | None = None) -> Stager:
        """A new temp file ``upload-*.part`` in ``directory`` (made if need be)."""
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=directory, prefix="upload-", suffix=".part")
        except OSError as exc:
            if is_disk_full(exc):
                raise no_room(place, directory, expected) from exc
            raise
        return cls(Path(name), os.fdopen(fd, "wb"), limit, place, expected)

    def write(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.limit:
            self.discard()
            raise TooLarge(f"upload is over the limit of {human_size(self.limit)} "
                           "(raise it with --max-upload-size)")
        with self._disk_full():
            self._out.write(chunk)
        self.size += len(chunk)
        self._digest.update(chunk)

    def finish(self) -> StagedFile:
        """The written file, flushed and fsynced."""
        with self._disk_full():
            self._out.flush()
            os.fsync(self._out.fileno())
            self._out.close()
        return StagedFile(self.path, self._digest.hexdigest(), self.size)

    def discard(self) -> None:
        """Remove the file (also after ``finish``, when it was not handed on)."""
        with contextlib.suppress(OSError):  # a full disk refuses the buffer's last bytes: moot
            self._out.close()
        self.path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _disk_full(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self.discard()  # before measuring: the message tells the space there really is
            raise no_room(self.place, self.path.parent, self.expected, self.size) from exc


def stage_stream(chunks: Iterable[bytes], directory: Path, limit: int,
                 place: str | None = None) -> StagedFile:
    """Write ``chunks`` to a temp file in ``directory``, hashing as it goes; fsync it.

    Raises TooLarge once more than ``limit`` bytes arrive, InsufficientStorage when the disk
    fills (``place`` names the folder in its message); either way the file is removed.
    """
    stager = Stager.open(directory, limit, place or f"the folder {directory}")
    try:
        for chunk in chunks:
            stager.write(chunk)
        return stager.finish()
    except BaseException:
        stager.discard()
        raise


def iter_file(file: BinaryIO, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
    """A file's bytes in chunks, for ``stage_stream``."""
    while chunk := file.read(chunk_size):
        yield chunk
