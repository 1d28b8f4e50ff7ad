"""The image recipe, proved without a Docker engine: hadolint passes, and the builder stage's
install yields a prefix from which the server starts and serves on its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from tests.conftest import IrisFiles
from tests.support import free_port, push

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
SEED_IMAGE_MB = 770


def test_hadolint_passes_with_no_warning() -> None:
    result = subprocess.run([str(HADOLINT), "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hadolint ignore" not in DOCKERFILE.read_text()


def test_dockerfile_text_declares_a_non_root_user_a_volume_and_a_curl_free_healthcheck() -> None:
    # What the Dockerfile says; no Docker engine builds or runs the image in this suite.
    text = DOCKERFILE.read_text()
    assert "USER 10001:10001" in text
    assert "--uid 10001" in text
    assert 'VOLUME ["/data"]' in text and "EXPOSE 8080 8081" in text
    assert "MODEL_MANAGER_PORT=8080" in text and "MODEL_MANAGER_GRPC_PORT=8081" in text
    assert "/v2/health/live" in text and "curl" not in text.split("HEALTHCHECK")[1]


def test_dockerignore_keeps_out_secrets_and_local_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "var", ".env*", "tests", ".pytest_cache", ".idea"):
        assert entry in ignored


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The builder stage's install, by the same script, with a Python that has nothing installed."""
    folder = tmp_path_factory.mktemp("image")
    builder = folder / "builder"
    subprocess.run([sys.executable, "-m", "venv", str(builder)], check=True)
    env = {**os.environ, "PATH": f"{builder / 'bin'}:{os.environ['PATH']}", "PIP_NO_CACHE_DIR": "0"}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run([str(ROOT / "deploy" / "docker" / "install-prefix.sh"), str(folder / "install"),
                    "", str(ROOT)], env=env, check=True, capture_output=True, timeout=600)
    return folder / "install"


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def test_prefix_is_stripped_and_far_below_the_seed_image(prefix: Path) -> None:
    assert not list(prefix.rglob("__pycache__"))
    assert not list(prefix.rglob("*.pyc"))
    assert not [p for p in prefix.rglob("tests") if p.is_dir()]
    site = next(prefix.glob("lib/python3*/site-packages"))
    for package in ("model_manager", "onnxruntime", "sklearn", "numpy", "scipy"):
        assert (site / package).is_dir(), package
    for framework in ("torch", "keras", "tensorflow", "xgboost"):
        assert not (site / framework).exists(), framework
    # The image is python:3.11-slim (~130 MB unpacked) plus this prefix.
    assert size_mb(prefix) + 130 < SEED_IMAGE_MB * 0.6


class PrefixServer(NamedTuple):
    url: str
    grpc_address: str


@pytest.fixture
def prefix_server(prefix: Path, tmp_path: Path) -> Iterator[PrefixServer]:
    """``model-manager serve`` from the prefix alone: stdlib plus the prefix, no site-packages."""
    site = next(prefix.glob("lib/python3*/site-packages"))
    port, grpc_port = free_port(), free_port()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "PYTHONUNBUFFERED": "1",
           "PYTHONDONTWRITEBYTECODE": "1", "MODEL_MANAGER_DATA_DIR": str(tmp_path / "data"),
           "MODEL_MANAGER_PORT": str(port), "MODEL_MANAGER_GRPC_PORT": str(grpc_port)}
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen([str(base_python), "-S", str(prefix / "bin" / "model-manager"),
                                "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, tmp_path / "server.log")
        yield PrefixServer(url, f"127.0.0.1:{grpc_port}")
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"not ready:\n{log.read_text()}")


def test_server_runs_from_the_prefix_alone(prefix_server: PrefixServer, iris: IrisFiles) -> None:
    with httpx.Client(base_url=prefix_server.url, timeout=30) as client:
        assert push(client, "iris", iris.onnx).status_code == 201
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                            "data": [5.1, 3.5, 1.4, 0.2]}]}
        answer = client.post("/v2/models/iris/infer", json=body).json()
    assert answer["outputs"][0]["data"] == [0]


def test_prefix_serves_grpc_health_and_inference(prefix_server: PrefixServer) -> None:
    # The image's second port: grpcio and the generated messages work from the prefix alone.
    with grpc.insecure_channel(prefix_server.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        metadata = stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=10)
    assert metadata.name == "ml-model-manager"
