"""What a model file's first bytes and, for zip archives, its member names say about its format."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

from model_manager.errors import UnsupportedFormat

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"


def zip_members(path: Path, limit: int = 200) -> list[str]:
    """The first ``limit`` member names of a zip archive, or [] if it is not one."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()[:limit]
    except (zipfile.BadZipFile, OSError):
        return []


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def missing_extra(fmt: str, extra: str) -> UnsupportedFormat:
    return UnsupportedFormat(f"the {fmt} format needs its framework: "
                             f"install ml-model-manager[{extra}]")
