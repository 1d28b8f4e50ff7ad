"""NaN and infinities in floating-point inputs are the caller's mistake: 400, counted as bad
input, never against the model's health (JSON and binary tensor data alike)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.test_model_cache import metric
from tests.onnx_models import sqrt_model
from tests.support import ServerProcess, push

INFER = "/v2/models/{}/infer"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("finite") / "var")
    yield server
    server.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def json_body(literal: str) -> bytes:
    """An FP32 request whose last element is written as ``literal`` (not valid for orjson)."""
    return (b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,4,9,'
            + literal.encode() + b"]}]}")


def binary_body(values: list[float]) -> tuple[bytes, dict[str, str]]:
    data = np.asarray([values], dtype=np.float32).tobytes()
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                     "parameters": {"binary_data_size": len(data)}}]}).encode()
    return header + data, {"Inference-Header-Content-Length": str(len(header))}


def test_non_finite_inputs_are_400_and_leave_the_model_healthy(server: ServerProcess,
                                                               client: httpx.Client,
                                                               tmp_path: Path) -> None:
    push(client, "rooted", sqrt_model(tmp_path / "sqrt.onnx"))
    url = INFER.format("rooted")
    assert client.post(url, content=json_body("16")).status_code == 200
    for literal in ("1e400", "-1e400", "NaN"):
        refused = client.post(url, content=json_body(literal))
        assert refused.status_code == 400, refused.text
        assert "input 'x' holds 1 NaN or infinite value(s) of 4" in refused.json()["error"]
    body, headers = binary_body([np.inf, np.nan, 1, -np.inf])
    refused = client.post(url, content=body, headers=headers)
    assert refused.status_code == 400, refused.text
    assert "input 'x' holds 3 NaN or infinite value(s) of 4" in refused.json()["error"]
    assert client.post(url, content=json_body("25")).status_code == 200

    usage = client.get("/api/models/rooted/usage").json()["versions"][0]
    assert usage["errors_by_kind"]["bad_input"] == 4
    assert metric(server, "model_manager_requests_total", model="rooted",
                  outcome="bad_input") == 4
    health = client.get("/api/models/rooted/health").json()["versions"][0]
    assert health["status"] == "healthy", health


def test_a_version_may_allow_non_finite_inputs(client: httpx.Client, tmp_path: Path) -> None:
    metadata = {"allow_non_finite_inputs": True, "validation": {"policy": {"nan": "flag"}}}
    push(client, "lenient", sqrt_model(tmp_path / "sqrt.onnx"), metadata=json.dumps(metadata))
    served = client.post(INFER.format("lenient"), content=json_body("1e400"))
    assert served.status_code == 200, served.text
    assert "Infinity" in served.text  # the model saw the infinity and answered sqrt(inf)


def test_a_malformed_allowance_is_refused_at_upload(client: httpx.Client, tmp_path: Path) -> None:
    response = push(client, "unsure", sqrt_model(tmp_path / "sqrt.onnx"),
                    metadata=json.dumps({"allow_non_finite_inputs": "yes"}))
    assert response.status_code == 400
    assert "allow_non_finite_inputs" in response.json()["error"]
