"""A full disk, as an operator meets it: the data dir on a 40 MiB filesystem of its own.

An upload that does not fit is 507 naming the place and its free space (refused before its body
is sent when its size is known), leaves nothing behind and is no bug; the server keeps serving,
and the same upload succeeds once there is room. Status, metrics and doctor tell the free space.
A store in S3 that is full answers 503 with the provider's message.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from model_manager.sizes import human_size
from tests.fake_s3 import STORAGE_FULL, RefusingS3
from tests.onnx_models import offset_model, weights_model
from tests.support import CLI, ServerProcess, push
from tests.tmpfs import MiB, fill, free_bytes, small_disk

X = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0.0] * 4}]}


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """The data dir: a 40 MiB filesystem (the server's log stays outside it)."""
    with small_disk(tmp_path / "var", 40) as path:
        yield path


@pytest.fixture
def server(disk: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(disk)
    yield process
    process.stop()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def streamed(path: Path) -> Iterator[bytes]:
    """A multipart upload of ``path`` sent chunked: its size is not known before it arrives."""
    yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="model.onnx"\r\n\r\n'
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            yield chunk
    yield b"\r\n--b--\r\n"


def push_streamed(http: httpx.Client, name: str, path: Path) -> httpx.Response:
    return http.post(f"/api/models/{name}/versions", content=streamed(path),
                     headers={"content-type": "multipart/form-data; boundary=b"})


def stored_blobs(disk: Path) -> list[Path]:
    return sorted((disk / "store" / "sha256").rglob("*"))


def staged_files(disk: Path) -> list[Path]:
    return [p for p in (disk / "store" / "tmp").rglob("*") if p.is_file()]


def free_shown(message: str) -> float:
    """The free MiB an error message names."""
    shown = re.search(r"has (\d+\.\d) MiB free", message)
    assert shown is not None, message
    return float(shown[1])


def test_an_upload_that_fills_the_disk_is_507_and_the_same_upload_fits_once_space_is_freed(
        tmp_path: Path, disk: Path, server: ServerProcess, http: httpx.Client) -> None:
    assert push(http, "small", offset_model(tmp_path / "small.onnx", 1.0)).status_code == 201
    assert http.post("/v2/models/small/infer", json=X).status_code == 200
    assert push(http, "first", weights_model(tmp_path / "first.onnx", 25, seed=1)).status_code == 201
    second = weights_model(tmp_path / "second.onnx", 25, seed=2)
    blobs_before = stored_blobs(disk)

    refused = push_streamed(http, "second", second)

    assert refused.status_code == 507
    message = refused.json()["error"]
    assert message.startswith(f"the store at {disk / 'store'} has ")
    assert "the upload needs more than" in message
    assert abs(free_shown(message) - free_bytes(disk) / MiB) < 0.5
    assert http.get("/api/models/second").status_code == 404
    assert stored_blobs(disk) == blobs_before
    assert staged_files(disk) == []
    assert http.post("/v2/models/small/infer", json=X).status_code == 200
    assert "Traceback" not in server.log() and "status=500" not in server.log()

    assert http.delete("/api/models/first/versions/1").status_code == 200
    stored = push_streamed(http, "second", second)
    assert stored.status_code == 201, stored.text
    assert http.post("/v2/models/second/infer", json={"inputs": [
        {"name": "idx", "datatype": "INT64", "shape": [1], "data": [0]}]}).status_code == 200


def send_headers_only(port: int, path: str, headers: dict[str, str]) -> tuple[str, bytes]:
    """POST the headers of a request, never its body (waiting, as curl does, for the server's
    ``100 Continue``): the status line and body of the server's first answer."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Expect: 100-continue",
             *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not _complete(answer):
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: (\d+)", head)
    return length is None or len(body) >= int(length[1])


def test_an_upload_whose_size_cannot_fit_is_refused_before_its_body_is_sent(
        disk: Path, server: ServerProcess) -> None:
    declared = free_bytes(disk) + 10 * MiB
    status, body = send_headers_only(server.port, "/api/models/huge/versions", {
        "Content-Type": "multipart/form-data; boundary=b", "Content-Length": str(declared)})
    assert status.startswith("HTTP/1.1 507"), status  # not 100 Continue: no byte was wanted
    message = json.loads(body)["error"]
    assert f"the upload needs {human_size(declared)}" in message
    assert abs(free_shown(message) - free_bytes(disk) / MiB) < 0.5
    assert staged_files(disk) == []
    assert httpx.get(f"{server.url}/api/models/huge").status_code == 404


def test_a_file_part_that_declares_a_size_that_cannot_fit_is_507(disk: Path,
                                                                  http: httpx.Client) -> None:
    declared = 60 * MiB

    def body() -> Iterator[bytes]:
        yield (b'--b\r\nContent-Disposition: form-data; name="file"; filename="m.onnx"\r\n'
               b"Content-Length: %d\r\n\r\n" % declared)
        yield bytes(1024)
        yield b"\r\n--b--\r\n"

    refused = http.post("/api/models/huge/versions", content=body(),
                        headers={"content-type": "multipart/form-data; boundary=b"})
    assert refused.status_code == 507
    assert "the upload needs 60.0 MiB" in refused.json()["error"]
    assert staged_files(disk) == []


def metric(text: str, name: str, place: str) -> float:
    found = re.search(rf'^{name}{{place="{place}"}} (\S+)$', text, re.MULTILINE)
    assert found is not None, f"{name} for {place} is missing"
    return float(found[1])


def test_status_and_metrics_report_the_free_space(disk: Path, http: httpx.Client) -> None:
    fill(disk, leave=10 * MiB)
    status = http.get("/api/status").json()["disk"]
    assert set(status) == {"data_dir", "staging"}
    assert Path(status["staging"]["path"]) == disk / "store" / "tmp"
    for place in status.values():
        assert place["total_bytes"] == 40 * MiB
        assert abs(place["free_bytes"] - free_bytes(disk)) < MiB
        assert place["free"].endswith(" MiB")
    metrics = http.get("/metrics").text
    for place in ("data_dir", "staging"):
        assert metric(metrics, "model_manager_disk_total_bytes", place) == 40 * MiB
        assert abs(metric(metrics, "model_manager_disk_free_bytes", place) - free_bytes(disk)) < MiB


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)


def test_doctor_warns_when_free_space_runs_low(tmp_path: Path, disk: Path, server: ServerProcess,
                                               http: httpx.Client) -> None:
    size = push(http, "big", weights_model(tmp_path / "big.onnx", 12)).json()["size"]
    calm = doctor("--url", server.url, "doctor")
    assert calm.returncode == 0 and "warning" not in calm.stderr

    filler = fill(disk, leave=8 * MiB)  # 20% free, but less than the version
    short = doctor("--url", server.url, "doctor")
    assert short.returncode == 0 and "agree" in short.stdout  # a warning, not a problem
    assert f"warning: data_dir at {disk} has " in short.stderr
    assert f"less than the largest version ({human_size(size)})" in short.stderr
    assert "less than 10%" not in short.stderr

    filler.unlink()
    fill(disk, leave=2 * MiB)
    report = json.loads(doctor("--url", server.url, "doctor", "--json").stdout)
    assert report["problems"] == []
    assert {w["place"] for w in report["warnings"]} == {"data_dir", "staging"}
    assert all("less than 10% of 40.0 MiB" in w["detail"] for w in report["warnings"])

    server.stop()
    stopped = doctor("doctor", "--data-dir", str(disk))
    assert stopped.returncode == 0 and "less than 10% of 40.0 MiB" in stopped.stderr


def test_an_s3_store_that_is_full_answers_503_with_its_message(tmp_path: Path) -> None:
    s3 = RefusingS3(*STORAGE_FULL)
    server = ServerProcess(tmp_path / "var", "--store-url", "s3://models/p", env=s3.env)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            refused = push(http, "m", offset_model(tmp_path / "m.onnx", 1.0))
            assert refused.status_code == 503
            assert STORAGE_FULL[2] in refused.json()["error"]
            assert "XMinioStorageFull" in refused.json()["error"]
            assert int(refused.headers["retry-after"]) > 0
            assert http.get("/api/models/m").status_code == 404
        assert [p for p in (tmp_path / "var" / "cache").rglob("*") if p.is_file()] == []
    finally:
        server.stop()
        s3.stop()
