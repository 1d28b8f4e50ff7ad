"""The ``ArtifactStore`` protocol and the staging of uploads.

An upload is first *staged*: streamed to a local temporary file while it is hashed and sized,
so it is never held whole in memory and can be inspected before it is accepted. Only then is it
``put`` into the store under its digest. A crash before ``put`` leaves a temp file, never a blob.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from model_manager.errors import TooLarge
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


def stage_stream(chunks: Iterable[bytes], directory: Path, limit: int) -> StagedFile:
    """Write ``chunks`` to a temp file in ``directory``, hashing as it goes; fsync it.

    Raises TooLarge (and removes the file) once more than ``limit`` bytes arrive.
    """
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, name = tempfile.mkstemp(dir=directory, prefix="upload-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"upload is over the limit of {limit} bytes "
                                   "(raise it with --max-upload-size)")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return StagedFile(Path(name), digest.hexdigest(), size)


def iter_file(file: BinaryIO, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
    """A file's bytes in chunks, for ``stage_stream``."""
    while chunk := file.read(chunk_size):
        yield chunk
