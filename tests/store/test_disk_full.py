"""Staging and storing on a full disk, and stores that refuse writes for want of space: a domain
error that names the place and its free space, and nothing left behind."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_manager.errors import InsufficientStorage, StoreFull, Unreachable
from model_manager.store import LocalStore, stage_stream
from model_manager.store.s3 import S3Store
from tests.fake_s3 import STORAGE_FULL, RefusingS3
from tests.tmpfs import MiB, free_bytes, small_disk


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", 8) as path:
        yield path


def chunks(megabytes: int) -> Iterator[bytes]:
    for _ in range(megabytes):
        yield os.urandom(MiB)


def test_staging_past_the_free_space_names_the_place_and_leaves_no_file(disk: Path) -> None:
    store = LocalStore(disk / "store")
    with pytest.raises(InsufficientStorage) as refused:
        stage_stream(chunks(12), store.staging_dir, 100 * MiB, store.staging_place)
    message = refused.value.message
    assert message.startswith(f"the store at {disk / 'store'} has ")
    shown = re.search(r"has (\d+\.\d) MiB free; the upload needs more than (\d+\.\d) MiB", message)
    assert shown is not None, message
    assert abs(float(shown[1]) - free_bytes(disk) / MiB) < 0.1  # the space left once it is gone
    assert list(store.staging_dir.iterdir()) == []


@pytest.mark.parametrize(("status", "code", "message"), [
    STORAGE_FULL,
    (403, "QuotaExceeded", "The bucket is over its quota."),
    (400, "XMinioAdminBucketQuotaExceeded", "Bucket quota exceeded"),
])
def test_an_s3_store_that_is_full_or_over_quota_is_store_full(tmp_path: Path, status: int,
                                                              code: str, message: str) -> None:
    s3 = RefusingS3(status, code, message)
    try:
        store = S3Store("models", "p", tmp_path / "cache", client=s3.client())
        staged = stage_stream([b"weights"], store.staging_dir, MiB, store.staging_place)
        with pytest.raises(StoreFull) as refused:
            store.put(staged)
    finally:
        s3.stop()
    assert message in refused.value.message and code in refused.value.message
    assert refused.value.retry_after > 0
    assert not staged.path.exists()


def test_an_s3_store_that_fails_a_write_is_unreachable(tmp_path: Path) -> None:
    s3 = RefusingS3(500, "InternalError", "We encountered an internal error.")
    try:
        store = S3Store("models", "p", tmp_path / "cache", client=s3.client())
        staged = stage_stream([b"weights"], store.staging_dir, MiB, store.staging_place)
        with pytest.raises(Unreachable, match="cannot be reached"):
            store.put(staged)
    finally:
        s3.stop()
    assert not staged.path.exists()
