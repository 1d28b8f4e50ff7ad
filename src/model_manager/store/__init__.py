"""Where artifact bytes live: content-addressed blobs behind the ``ArtifactStore`` protocol."""

from __future__ import annotations

from model_manager.store.base import ArtifactStore, StagedFile, iter_file, stage_stream
from model_manager.store.local import LocalStore
from model_manager.store.memory import MemoryStore

__all__ = ["ArtifactStore", "LocalStore", "MemoryStore", "StagedFile", "iter_file", "open_store",
           "stage_stream"]


def open_store(url: str) -> ArtifactStore:
    """The store for a ``--store-url``: a local folder path (or ``file://``), or ``memory://``."""
    if url.startswith("memory://"):
        return MemoryStore()
    if url.startswith("file://"):
        url = url[len("file://"):]
    if "://" in url:
        from model_manager.errors import UnsupportedFormat

        raise UnsupportedFormat(f"unsupported store URL {url!r}: use a folder path")
    return LocalStore(url)
