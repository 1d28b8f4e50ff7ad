"""Zip bombs in every zip-based format are refused from the central directory: quickly, with
no memory spent unpacking them and nothing left behind."""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import IrisFiles
from tests.e2e.test_bad_input import assert_nothing_left, error_of, stored_blobs
from tests.e2e.test_model_cache import server_rss
from tests.support import ServerProcess, push

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("bombs") / "var", "--max-upload-size", "1MiB",
                           "--max-unpacked-size", "8MiB")
    yield server
    server.stop()


def keras_file(folder: Path, iris: IrisFiles) -> Path:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(3)(inputs)).save(folder / "model.keras")
    return folder / "model.keras"


def torchscript_file(folder: Path, iris: IrisFiles) -> Path:
    import torch

    linear = torch.nn.Linear(4, 3).eval()
    torch.jit.save(torch.jit.trace(linear, torch.zeros(1, 4)), folder / "model.pt")
    return folder / "model.pt"


def skops_file(folder: Path, iris: IrisFiles) -> Path:
    return Path(shutil.copy(iris.skops, folder / "model.skops"))


MAKERS: dict[str, Callable[[Path, IrisFiles], Path]] = {
    "skops": skops_file, "keras": keras_file, "torchscript": torchscript_file}


def with_member(path: Path, name: str, chunks: Iterator[bytes], level: int = 9) -> Path:
    """The model file with one more member, written in chunks (never whole in memory)."""
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED, compresslevel=level) as archive, \
            archive.open(name, "w", force_zip64=True) as member:
        for chunk in chunks:
            member.write(chunk)
    return path


def zeros(size: int) -> Iterator[bytes]:
    block = bytes(MiB)
    for _ in range(size // MiB):
        yield block


@pytest.mark.parametrize("kind", list(MAKERS))
def test_a_zip_bomb_is_refused_before_anything_unpacks_it(server: ServerProcess, kind: str,
                                                          iris: IrisFiles, tmp_path: Path) -> None:
    bomb = with_member(MAKERS[kind](tmp_path, iris), "weights/extra.bin", zeros(64 * MiB))
    assert bomb.stat().st_size < MiB  # a small upload...
    blobs_before, rss_before = stored_blobs(server), server_rss(server)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        message = error_of(push(http, "bomb", bomb), 400)
        assert "member 'weights/extra.bin' unpacks" in message and "into 64.0 MiB" in message
        assert "zip bombs" in message
        assert_nothing_left(server, http, "bomb", blobs_before)
    assert server_rss(server) - rss_before < 50 * MiB


def test_an_archive_past_the_unpacked_limit_is_refused(server: ServerProcess, iris: IrisFiles,
                                                       tmp_path: Path) -> None:
    sparse = (np.random.default_rng(0).random(12 * MiB) < 0.02).astype(np.uint8).tobytes()
    large = with_member(skops_file(tmp_path, iris), "extra.bin", iter([sparse]), level=1)
    blobs_before = stored_blobs(server)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        message = error_of(push(http, "large", large), 400)
        assert "would unpack to 12.0 MiB, more than the 8.0 MiB allowed" in message
        assert_nothing_left(server, http, "large", blobs_before)
