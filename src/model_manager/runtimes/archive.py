"""What a model file's first bytes and, for zip archives, its member names say about its format."""

from __future__ import annotations

import importlib.util
import stat
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from model_manager.errors import UnsafeArtifact, UnsupportedFormat
from model_manager.sizes import human_size

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"


def zip_members(path: Path, limit: int = 200) -> list[str]:
    """The first ``limit`` member names of a zip archive, or [] if it is not one."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()[:limit]
    except (zipfile.BadZipFile, OSError):
        return []


MAX_RATIO = 100
"""Uncompressed to compressed size past which a member is a bomb, not a model file..."""
RATIO_FLOOR = 4 * 1024 * 1024
"""...once it unpacks to more than this (small members of zeros compress well honestly)."""


def check_archive(path: Path, max_unpacked: int | None = None) -> None:
    """Refuse a zip archive, from its central directory alone (nothing is extracted):

    - with a member that could land outside a folder it is unpacked in: an absolute name, a
      ``..`` part or a symbolic link;
    - whose members would unpack to more than ``max_unpacked`` bytes in all, or with a member
      of over ``RATIO_FLOOR`` bytes compressed more than ``MAX_RATIO`` to one (a zip bomb).

    Keras, skops and TorchScript files are zip archives, and not every loader of theirs checks
    names or sizes before it extracts."""
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
    _check_sizes(members, max_unpacked)


def _check_sizes(members: list[zipfile.ZipInfo], max_unpacked: int | None) -> None:
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > RATIO_FLOOR and ratio > MAX_RATIO:
            raise UnsafeArtifact(f"the archive's member {member.filename!r} unpacks "
                                 f"{human_size(member.compress_size)} into "
                                 f"{human_size(member.file_size)} (over {MAX_RATIO} to 1), as "
                                 "zip bombs do; such archives are refused")
    total = sum(m.file_size for m in members)
    if max_unpacked is not None and total > max_unpacked:
        raise UnsafeArtifact(f"the archive would unpack to {human_size(total)}, more than the "
                             f"{human_size(max_unpacked)} allowed (--max-unpacked-size); "
                             "archives that large are refused")


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
