"""Shared fixtures: real model files made by the real libraries, and the real server in a
subprocess on a free port."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest

from model_manager.demo import train_iris, write_onnx, write_skops
from tests.postgres import PostgresServer, postgres_server
from tests.s3 import S3Server, s3_server
from tests.support import ServerProcess

# Servers that tests start without a gRPC port of their own (`make serve`, the image's prefix)
# would all take the default one.
os.environ.setdefault("MODEL_MANAGER_GRPC_PORT", "0")


@dataclasses.dataclass(frozen=True)
class IrisFiles:
    model: Any
    x: np.ndarray
    onnx: Path
    skops: Path
    joblib: Path


@pytest.fixture(scope="session")
def iris(tmp_path_factory: pytest.TempPathFactory) -> IrisFiles:
    """The iris classifier, saved as ONNX, skops and joblib, with sample rows."""
    from sklearn.datasets import load_iris

    folder = tmp_path_factory.mktemp("iris")
    model = train_iris()
    joblib.dump(model, folder / "iris.joblib")
    x = load_iris(return_X_y=True)[0][::10]
    return IrisFiles(model, x, write_onnx(model, folder / "iris.onnx", 4),
                     write_skops(model, folder / "iris.skops"), folder / "iris.joblib")


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with the demo models, shared by a test module."""
    server = ServerProcess(tmp_path_factory.mktemp("demo") / "var", "--demo")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One empty server, shared by a test module; tests use their own model names."""
    server = ServerProcess(tmp_path_factory.mktemp("srv") / "var", "--max-upload-size", "1MiB")
    yield server
    server.stop()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL 15 server for the session."""
    yield from postgres_server()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A local S3 API on loopback for the session."""
    yield from s3_server()


SLOW_FIRST = ("tests/deploy/test_terraform.py", "tests/e2e/test_crash_safety.py",
              "tests/e2e/test_format_memory.py", "tests/e2e/test_formats.py",
              "tests/e2e/test_gpu.py", "tests/e2e/test_workers.py", "tests/e2e/test_fleet.py",
              "tests/e2e/test_registry_outage.py", "tests/e2e/test_drift.py",
              "tests/e2e/test_dashboard.py", "tests/deploy/test_docker.py")
"""Test files of half a minute or more, longest first. `make test` runs whole files on three
workers in this order (``--no-loadscope-reorder``: else pytest-xdist starts the files with the
most tests first); starting the longest first keeps one worker from running a long file alone
at the end."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
