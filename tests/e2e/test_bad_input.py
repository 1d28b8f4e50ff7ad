"""Bad input gets a JSON error with the right status, and the server keeps serving."""

from __future__ import annotations

import http.client as http_client
import json
import os
import shutil
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import IrisFiles
from tests.support import ServerProcess, push

GOOD = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


@pytest.fixture(scope="module")
def served(server: ServerProcess, iris: IrisFiles) -> str:
    with httpx.Client(base_url=server.url) as client:
        assert push(client, "bad-input", iris.skops).status_code == 201
    return "bad-input"


@pytest.fixture(autouse=True)
def still_serving(http: httpx.Client, served: str) -> Iterator[None]:
    yield
    assert http.get("/v2/health/ready").status_code == 200
    assert http.post(f"/v2/models/{served}/infer", json=GOOD).status_code == 200


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert isinstance(message, str) and message
    return message


def tensor(**overrides: object) -> dict[str, object]:
    return {"inputs": [{**GOOD["inputs"][0], **overrides}]}  # type: ignore[dict-item]


@pytest.mark.parametrize(("path", "expected"), [
    ("/v2/models/unknown/infer", "'unknown' is not registered"),
    ("/v2/models/bad-input/versions/9/infer", "no version 9"),
    ("/v2/models/bad-input/versions/canary/infer", "no version or alias 'canary'"),
])
def test_unknown_model_version_alias_is_404(http: httpx.Client, path: str, expected: str) -> None:
    assert expected in error_of(http.post(path, json=GOOD), 404)


def test_unknown_model_metadata_and_management_are_404(http: httpx.Client) -> None:
    error_of(http.get("/v2/models/unknown"), 404)
    error_of(http.get("/api/models/unknown"), 404)
    error_of(http.get("/api/models/bad-input/versions/77"), 404)
    error_of(http.get("/no/such/endpoint"), 404)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"inputs": []}', b"\xff\xfe"])
def test_malformed_body_is_400(http: httpx.Client, served: str, body: bytes) -> None:
    error_of(http.post(f"/v2/models/{served}/infer", content=body), 400)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"data": [1, 2, 3]}, "holds 4 elements, data has 3"),
    ({"shape": [2, 4]}, "holds 8 elements, data has 4"),
    ({"datatype": "FLOAT"}, "unknown datatype"),
    ({"shape": [1, -4]}, "non-negative integers"),
    ({"data": ["a", "b", "c", "d"]}, "not FP64"),
])
def test_malformed_tensor_is_400(http: httpx.Client, served: str, overrides: dict[str, object],
                                 expected: str) -> None:
    response = http.post(f"/v2/models/{served}/infer", json=tensor(**overrides))
    assert expected in error_of(response, 400)


@pytest.mark.parametrize(("request_body", "expected"), [
    (tensor(datatype="FP32"), "must be FP64, got FP32"),
    (tensor(shape=[1, 2, 2]), "must have shape [-1, 4]"),
    (tensor(shape=[2, 2]), "must have shape [-1, 4]"),
    (tensor(name="x"), "missing ['input']"),
    ({**GOOD, "outputs": [{"name": "nope"}]}, "no output ['nope']"),
])
def test_tensor_that_does_not_fit_the_signature_is_422(http: httpx.Client, served: str,
                                                       request_body: dict[str, object],
                                                       expected: str) -> None:
    response = http.post(f"/v2/models/{served}/infer", json=request_body)
    assert expected in error_of(response, 422)


def test_binary_header_length_past_the_body_is_400(http: httpx.Client, served: str) -> None:
    header = json.dumps({"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4],
                                     "parameters": {"binary_data_size": 32}}]}).encode()
    body = header + bytes(32)
    past = http.post(f"/v2/models/{served}/infer", content=body,
                     headers={"Inference-Header-Content-Length": str(len(body) + 10)})
    assert "Inference-Header-Content-Length runs 10 bytes past the body" in error_of(past, 400)
    short = http.post(f"/v2/models/{served}/infer", content=header + bytes(16),
                      headers={"Inference-Header-Content-Length": str(len(header))})
    assert "binary_data_size runs 16 bytes past the body" in error_of(short, 400)
    extra = http.post(f"/v2/models/{served}/infer", content=body + bytes(8),
                      headers={"Inference-Header-Content-Length": str(len(header))})
    assert "belong to no input" in error_of(extra, 400)
    ok = http.post(f"/v2/models/{served}/infer", content=body,
                   headers={"Inference-Header-Content-Length": str(len(header))})
    assert ok.status_code == 200


@pytest.mark.parametrize("name", ["..%2Fx", "Upper", "a" * 200, "-dash-first", "sp ace"])
def test_invalid_model_name_is_400(http: httpx.Client, iris: IrisFiles, name: str) -> None:
    assert "invalid model name" in error_of(push(http, name, iris.skops), 400)


@pytest.mark.parametrize("path", ["/api/models/../x/versions", "/api/models/a/../x/versions",
                                  "/api/models/./x/versions"])
def test_dot_dot_path_never_reaches_a_model(server: ServerProcess, http: httpx.Client,
                                            iris: IrisFiles, path: str) -> None:
    # Sent as written: httpx (and most clients) would resolve the dots before sending.
    with open(iris.skops, "rb") as f:
        upload = httpx.Request("POST", server.url, files={"file": ("iris.skops", f.read())})
    connection = http_client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", path, body=upload.read(), headers=dict(upload.headers))
        answer = connection.getresponse()
        status, body = answer.status, json.loads(answer.read())
    finally:
        connection.close()
    assert status == 400, body
    assert "invalid model name" in body["error"]
    assert [m["name"] for m in http.get("/api/models").json() if "x" in m["name"]] == []


def stored_blobs(server: ServerProcess) -> list[Path]:
    return sorted((server.data_dir / "store" / "sha256").rglob("*"))


def staged_files(server: ServerProcess) -> list[str]:
    return os.listdir(server.data_dir / "store" / "tmp")


def assert_nothing_left(server: ServerProcess, http: httpx.Client, model: str,
                        blobs_before: list[Path]) -> None:
    """A refused upload left no model, no blob and no temp file."""
    error_of(http.get(f"/api/models/{model}"), 404)
    assert stored_blobs(server) == blobs_before
    assert staged_files(server) == []


@pytest.mark.parametrize(("content", "filename", "expected"), [
    (b"", "model.onnx", "empty"),
    (os.urandom(4096), "model.onnx", "not a loadable ONNX model"),
    (b"PK\x03\x04" + os.urandom(200), "model.skops", "not a loadable skops file"),
    (b"\x80\x04garbage", "model.pkl", "--allow-pickle"),
])
def test_empty_or_corrupt_model_is_not_registered(server: ServerProcess, http: httpx.Client,
                                                  content: bytes, filename: str,
                                                  expected: str) -> None:
    blobs_before = stored_blobs(server)
    response = http.post("/api/models/corrupt/versions", files={"file": (filename, content)})
    assert expected in error_of(response, 400)
    assert_nothing_left(server, http, "corrupt", blobs_before)


def with_member(source: Path, folder: Path, member: zipfile.ZipInfo | str) -> Path:
    """A copy of a real zip-based model file with one more member."""
    target = folder / source.name
    shutil.copy(source, target)
    with zipfile.ZipFile(target, "a") as archive:
        archive.writestr(member, b"#!/bin/sh\necho owned\n")
    return target


def symlink_member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(("member", "expected"), [
    ("../../../../tmp/evil.sh", "climbs out of the archive with '..'"),
    ("weights/..\\..\\evil.bat", "climbs out of the archive with '..'"),
    ("/etc/cron.d/evil", "is an absolute path"),
    ("C:\\evil.bat", "is an absolute path"),
    (symlink_member("link"), "is a symbolic link"),
])
def test_archives_with_escaping_members_are_refused(server: ServerProcess, http: httpx.Client,
                                                    iris: IrisFiles, tmp_path: Path,
                                                    member: zipfile.ZipInfo | str,
                                                    expected: str) -> None:
    blobs_before = stored_blobs(server)
    hostile = with_member(iris.skops, tmp_path, member)
    message = error_of(push(http, "hostile", hostile), 400)
    assert expected in message and "refused" in message
    assert_nothing_left(server, http, "hostile", blobs_before)


@pytest.mark.parametrize(("source", "filename", "fields", "expected"), [
    ("skops", "model.onnx", {}, "not a loadable ONNX model"),
    ("onnx", "model.skops", {}, "neither a skops file (a zip archive) nor a pickle"),
    ("joblib", "model.skops", {}, "--allow-pickle"),
    ("joblib", "model.onnx", {}, "not a loadable ONNX model"),
    ("onnx", "model.bin", {"format": "xgboost"}, "not a loadable XGBoost model"),
    ("skops", "model.keras", {}, "Keras"),
])
def test_a_file_that_claims_another_format_is_refused(server: ServerProcess, http: httpx.Client,
                                                      iris: IrisFiles, source: str, filename: str,
                                                      fields: dict[str, str],
                                                      expected: str) -> None:
    blobs_before = stored_blobs(server)
    with open(getattr(iris, source), "rb") as f:
        response = http.post("/api/models/liar/versions", files={"file": (filename, f)},
                             data=fields)
    assert expected in error_of(response, 400)
    assert_nothing_left(server, http, "liar", blobs_before)


def test_upload_over_the_limit_is_413(server: ServerProcess, http: httpx.Client) -> None:
    blobs_before = stored_blobs(server)
    big = os.urandom(2 * 1024 * 1024)  # the server's --max-upload-size is 1MiB
    response = http.post("/api/models/too-big/versions", files={"file": ("big.onnx", big)})
    assert "over the limit" in error_of(response, 413)

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit applies while streaming
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.onnx\"\r\n\r\n"
        for _ in range(32):
            yield bytes(64 * 1024)
        yield b"\r\n--b--\r\n"

    streamed = http.post("/api/models/too-big/versions", content=chunked(),
                         headers={"content-type": "multipart/form-data; boundary=b"})
    assert "over the limit" in error_of(streamed, 413)
    error_of(http.get("/api/models/too-big"), 404)
    assert stored_blobs(server) == blobs_before


def test_upload_without_file_and_bad_metadata_are_400(http: httpx.Client, iris: IrisFiles) -> None:
    assert "'file'" in error_of(http.post("/api/models/nofile/versions", data={"x": "1"}), 400)
    with open(iris.skops, "rb") as f:
        response = http.post("/api/models/badmeta/versions", files={"file": ("m.skops", f)},
                             data={"metadata": "{nope"})
    assert "metadata is not valid JSON" in error_of(response, 400)
    with open(iris.skops, "rb") as f:
        response = http.post("/api/models/badmeta/versions", files={"file": ("m.skops", f)},
                             data={"format": "tensorflow"})
    assert "unknown format" in error_of(response, 400)


def test_alias_errors(http: httpx.Client, served: str) -> None:
    assert "no version 42" in error_of(
        http.put(f"/api/models/{served}/aliases/prod", json={"version": 42}), 404)
    assert "invalid alias" in error_of(
        http.put(f"/api/models/{served}/aliases/123", json={"version": 1}), 400)
    error_of(http.put(f"/api/models/{served}/aliases/prod", json={"wrong": 1}), 400)
    error_of(http.put(f"/api/models/{served}/aliases/prod", content=b"{"), 400)
    error_of(http.delete(f"/api/models/{served}/aliases/never-set"), 404)
