"""What a model file's first bytes and, for zip archives, its member names say about its format."""

from __future__ import annotations

import importlib.util
import stat
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from model_manager.errors import UnsafeArtifact, UnsupportedFormat

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"


def zip_members(path: Path, limit: int = 200) -> list[str]:
    """The first ``limit`` member names of a zip archive, or [] if it is not one."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()[:limit]
    except (zipfile.BadZipFile, OSError):
        return []


def check_archive(path: Path) -> None:
    """Refuse a zip archive with a member that could land outside a folder it is unpacked in:
    an absolute name, a ``..`` part or a symbolic link. Keras, skops and TorchScript files are
    zip archives, and not every loader of theirs checks names before it extracts."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip archive: the format's loader judges it
    for member in members:
        reason = _unsafe_member(member)
        if reason:
            raise UnsafeArtifact(f"the archive's member {member.filename!r} {reason}; "
                                 "archives with such members are refused")


def _unsafe_member(member: zipfile.ZipInfo) -> str | None:
    name = member.filename
    windows = PureWindowsPath(name)
    if name.startswith(("/", "\\")) or windows.drive or windows.root:
        return "is an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "climbs out of the archive with '..'"
    if member.create_system == 3 and stat.S_ISLNK(member.external_attr >> 16):
        return "is a symbolic link"
    return None


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def missing_extra(fmt: str, extra: str) -> UnsupportedFormat:
    return UnsupportedFormat(f"the {fmt} format needs its framework: "
                             f"install ml-model-manager[{extra}]")
