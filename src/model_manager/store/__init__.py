"""Where artifact bytes live: content-addressed blobs behind the ``ArtifactStore`` protocol."""

from __future__ import annotations

import tempfile
from pathlib import Path

from model_manager.store.base import ArtifactStore, StagedFile, iter_file, stage_stream
from model_manager.store.local import LocalStore
from model_manager.store.memory import MemoryStore

__all__ = ["ArtifactStore", "LocalStore", "MemoryStore", "StagedFile", "iter_file", "open_store",
           "stage_stream"]


def open_store(url: str, cache_dir: Path | None = None) -> ArtifactStore:
    """The store for a ``--store-url``: a local folder path (or ``file://``), ``s3://bucket/prefix``
    (the s3 extra; blobs are cached in ``cache_dir``), or ``memory://``. A local folder is made
    now if need be: once the server runs, its absence means the volume is gone."""
    if url.startswith("memory://"):
        return MemoryStore()
    if url.startswith("s3://"):
        from model_manager.store.s3 import S3Store

        return S3Store.from_url(url, cache_dir or Path(tempfile.mkdtemp(prefix="mm-s3-cache-")))
    if url.startswith("file://"):
        url = url[len("file://"):]
    if "://" in url:
        from model_manager.errors import UnsupportedFormat

        raise UnsupportedFormat(f"unsupported store URL {url!r}: use a folder path or "
                                f"s3://bucket/prefix")
    Path(url).mkdir(parents=True, exist_ok=True)
    return LocalStore(url)
