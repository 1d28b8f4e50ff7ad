"""The artifact store contract, on both stores, and the local store's layout on disk."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_manager.errors import NotFound, TooLarge, Unreachable, UnsupportedFormat
from model_manager.store import ArtifactStore, LocalStore, MemoryStore, iter_file, open_store, stage_stream
from model_manager.store.s3 import S3Store
from tests.s3 import S3Server
from tests.support import free_port

CHUNKS = [b"hello ", b"", b"model ", b"manager" * 1000]
CONTENT = b"".join(CHUNKS)
DIGEST = hashlib.sha256(CONTENT).hexdigest()
BUCKETS = itertools.count()


@pytest.fixture(params=["local", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield open_store(str(tmp_path / "store"))
        return
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3")
        bucket = s3.new_bucket(f"store-{next(BUCKETS)}")
        yield S3Store(bucket, "models", tmp_path / "cache", client=s3.client())
        return
    yield MemoryStore()


def staged_files(store: ArtifactStore) -> list[Path]:
    return list(store.staging_dir.iterdir()) if store.staging_dir.exists() else []


class TestStoreContract:
    def test_stage_stream_hashes_and_sizes_the_chunks(self, store: ArtifactStore) -> None:
        staged = stage_stream(iter(CHUNKS), store.staging_dir, limit=len(CONTENT))

        assert staged.sha256 == DIGEST
        assert staged.size == len(CONTENT)
        assert staged.path.parent == store.staging_dir
        assert staged.path.read_bytes() == CONTENT

    def test_stage_stream_of_nothing_is_the_empty_digest(self, store: ArtifactStore) -> None:
        staged = stage_stream([], store.staging_dir, limit=0)

        assert staged.sha256 == hashlib.sha256(b"").hexdigest()
        assert staged.size == 0

    def test_put_then_fetch_returns_the_same_bytes(self, store: ArtifactStore) -> None:
        assert not store.exists(DIGEST)
        store.put(stage_stream(CHUNKS, store.staging_dir, limit=1 << 20))

        assert store.exists(DIGEST)
        assert store.fetch(DIGEST).read_bytes() == CONTENT
        assert staged_files(store) == []

    def test_identical_content_is_stored_once(self, store: ArtifactStore) -> None:
        store.put(stage_stream(CHUNKS, store.staging_dir, limit=1 << 20))
        store.put(stage_stream([CONTENT], store.staging_dir, limit=1 << 20))

        assert store.fetch(DIGEST).read_bytes() == CONTENT
        assert staged_files(store) == []
        assert store.blobs() == {DIGEST: len(CONTENT)}
        if isinstance(store, LocalStore):
            assert [p for p in (store.root / "sha256").rglob("*") if p.is_file()] == [
                store.root / "sha256" / DIGEST[:2] / DIGEST]

    def test_different_content_is_kept_apart(self, store: ArtifactStore) -> None:
        store.put(stage_stream([b"one"], store.staging_dir, limit=100))
        store.put(stage_stream([b"two"], store.staging_dir, limit=100))

        assert store.fetch(hashlib.sha256(b"one").hexdigest()).read_bytes() == b"one"
        assert store.fetch(hashlib.sha256(b"two").hexdigest()).read_bytes() == b"two"

    def test_delete_removes_the_blob(self, store: ArtifactStore) -> None:
        store.put(stage_stream(CHUNKS, store.staging_dir, limit=1 << 20))
        store.delete(DIGEST)

        assert not store.exists(DIGEST)
        with pytest.raises(NotFound):
            store.fetch(DIGEST)
        store.delete(DIGEST)  # deleting a missing blob is not an error
        assert not store.exists(DIGEST)

    def test_fetch_of_an_unknown_digest_raises_not_found(self, store: ArtifactStore) -> None:
        with pytest.raises(NotFound):
            store.fetch("0" * 64)

    def test_stage_stream_over_the_limit_raises_and_leaves_no_file(self, store: ArtifactStore) -> None:
        with pytest.raises(TooLarge, match="limit of 100 B"):
            stage_stream([b"x" * 60, b"y" * 60, b"never read"], store.staging_dir, limit=100)

        assert staged_files(store) == []

    def test_stage_stream_at_the_limit_is_accepted(self, store: ArtifactStore) -> None:
        staged = stage_stream([b"x" * 60, b"y" * 40], store.staging_dir, limit=100)
        assert staged.size == 100

    def test_failing_source_leaves_no_file(self, store: ArtifactStore) -> None:
        def broken() -> Iterator[bytes]:
            yield b"partial"
            raise ConnectionError("client went away")

        with pytest.raises(ConnectionError):
            stage_stream(broken(), store.staging_dir, limit=1 << 20)
        assert staged_files(store) == []


def test_local_blob_layout(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put(stage_stream(CHUNKS, store.staging_dir, limit=1 << 20))

    path = store.fetch(DIGEST)
    assert path == tmp_path / "sha256" / DIGEST[:2] / DIGEST
    assert path.read_bytes() == CONTENT


def test_local_put_copies_a_file_staged_elsewhere(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    staged = stage_stream(CHUNKS, tmp_path / "elsewhere", limit=1 << 20)
    store.put(staged)

    assert store.fetch(DIGEST).read_bytes() == CONTENT
    assert staged_files(store) == []


def test_local_store_survives_a_new_instance(tmp_path: Path) -> None:
    LocalStore(tmp_path).put(stage_stream(CHUNKS, tmp_path / "tmp", limit=1 << 20))
    assert LocalStore(tmp_path).fetch(DIGEST).read_bytes() == CONTENT


@pytest.mark.parametrize("digest", ["../../etc/passwd", "A" * 64, "a" * 63, "", DIGEST + "/.."])
def test_local_invalid_digest_raises_not_found(tmp_path: Path, digest: str) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(NotFound):
        store.fetch(digest)
    with pytest.raises(NotFound):
        store.delete(digest)


def test_iter_file_feeds_stage_stream(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(CONTENT)
    with open(source, "rb") as f:
        chunks = list(iter_file(f, chunk_size=1000))

    assert all(len(c) <= 1000 for c in chunks)
    assert b"".join(chunks) == CONTENT


def test_open_store_picks_the_store_from_the_url(tmp_path: Path) -> None:
    memory = open_store("memory://")
    assert isinstance(memory, MemoryStore)
    local = open_store(f"file://{tmp_path}")
    assert isinstance(local, LocalStore)
    assert local.root == tmp_path
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    s3 = open_store("s3://models/prod", tmp_path / "cache")
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("models", "prod")
    with pytest.raises(UnsupportedFormat, match="s3://bucket/prefix"):
        open_store("ftp://models")


def test_s3_large_artifacts_go_up_in_parts_and_come_down_once(s3: S3Server, tmp_path: Path) -> None:
    client = s3.client()
    store = S3Store(s3.new_bucket("multipart"), "p", tmp_path / "cache", client=client,
                    multipart_threshold=5 * 1024**2)
    content = os.urandom(12 * 1024**2)
    staged = stage_stream([content], store.staging_dir, limit=len(content))
    store.put(staged)
    key = f"p/sha256/{staged.sha256[:2]}/{staged.sha256}"
    assert client.head_object(Bucket="multipart", Key=key)["ETag"].endswith('-3"')  # type: ignore[attr-defined]
    assert store.blobs() == {staged.sha256: len(content)}
    first = store.fetch(staged.sha256)
    assert first.read_bytes() == content
    client.delete_object(Bucket="multipart", Key=key)  # type: ignore[attr-defined]
    assert store.fetch(staged.sha256) == first  # served from the local cache by digest
    assert not store.exists(staged.sha256)


def test_a_local_store_whose_folder_is_gone_is_unreachable_not_missing(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    store.put(stage_stream(CHUNKS, store.staging_dir, limit=1 << 20))
    (tmp_path / "store").rename(tmp_path / "unmounted")

    with pytest.raises(Unreachable, match="unreachable"):
        store.fetch(DIGEST)
    (tmp_path / "unmounted").rename(tmp_path / "store")
    assert store.fetch(DIGEST).read_bytes() == CONTENT


def test_an_s3_endpoint_that_does_not_answer_is_unreachable_not_missing(tmp_path: Path) -> None:
    import boto3
    from botocore.config import Config

    nobody = f"http://127.0.0.1:{free_port()}"
    client = boto3.client("s3", endpoint_url=nobody, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1",
                          config=Config(retries={"max_attempts": 1}))
    store = S3Store("models", "p", tmp_path / "cache", client=client)

    with pytest.raises(Unreachable, match="cannot be reached"):
        store.fetch(DIGEST)
    with pytest.raises(Unreachable, match="cannot be reached"):
        store.exists(DIGEST)
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))  # no half download left
