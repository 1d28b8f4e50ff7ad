"""Zip archives are judged from their central directory: escaping members, and bombs."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from model_manager.errors import UnsafeArtifact
from model_manager.runtimes import check_archive


def archive(path: Path, **members: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as f:
        for name, data in members.items():
            f.writestr(name, data)
    return path


def test_a_member_compressed_past_the_ratio_is_a_bomb(tmp_path: Path) -> None:
    bomb = archive(tmp_path / "bomb.zip", ok=b"x", zeros=bytes(8 * 1024 * 1024))

    with pytest.raises(UnsafeArtifact) as info:
        check_archive(bomb, max_unpacked=None)

    assert "member 'zeros' unpacks" in info.value.message
    assert "into 8.0 MiB (over 100 to 1)" in info.value.message


def test_small_members_may_compress_well(tmp_path: Path) -> None:
    check_archive(archive(tmp_path / "fine.zip", zeros=bytes(1024 * 1024)), max_unpacked=None)


def test_members_past_the_unpacked_limit_are_refused(tmp_path: Path) -> None:
    big = archive(tmp_path / "big.zip", a=bytes(600_000), b=bytes(600_000))
    check_archive(big, max_unpacked=1_200_000)

    with pytest.raises(UnsafeArtifact) as info:
        check_archive(big, max_unpacked=1_000_000)

    assert info.value.message.startswith(
        "the archive would unpack to 1.1 MiB, more than the 976.6 KiB allowed "
        "(--max-unpacked-size)")


def test_files_that_are_not_archives_are_left_to_their_loader(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07" * 100)
    check_archive(path, max_unpacked=1)
