"""Request limits: each with a clear 400 or 413, before any large allocation."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

import httpx
import pytest

from tests.onnx_models import offset_model
from tests.support import ServerProcess, push


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("limits")
    server = ServerProcess(folder / "var", "--max-inputs", "2", "--max-tensor-elements", "100",
                           "--max-bytes-element", "10")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        push(client, "small", offset_model(folder / "m.onnx", 1.0))
    yield server
    server.stop()


def x(shape: list[int], data: list[float] | None = None, name: str = "x") -> dict[str, object]:
    return {"name": name, "datatype": "FP32", "shape": shape, "data": data or [0.0] * 4}


@pytest.mark.parametrize(("inputs", "status", "message"), [
    ([x([1, 4], name=n) for n in ("a", "b", "c")], 400, "at most 2 (--max-inputs)"),
    ([x([1, 1_000_000_000])], 413, "at most 100 per input (--max-tensor-elements)"),
    ([x([2**40, 2**40])], 413, "--max-tensor-elements"),
    ([{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["eleven char"]}], 413,
     "BYTES element of 11 B"),
])
def test_requests_past_a_limit_are_refused(limited: ServerProcess, inputs: list[object], status: int,
                                           message: str) -> None:
    response = httpx.post(f"{limited.url}/v2/models/small/infer", json={"inputs": inputs})
    assert response.status_code == status and message in response.json()["error"]
    assert httpx.post(f"{limited.url}/v2/models/small/infer", json={"inputs": [x([1, 4])]}
                      ).status_code == 200


def test_a_binary_bytes_element_that_claims_gigabytes_is_413(limited: ServerProcess) -> None:
    header = json.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": 8}}]}).encode()
    body = header + struct.pack("<I", 2**31) + b"abcd"
    response = httpx.post(f"{limited.url}/v2/models/small/infer", content=body,
                          headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 413 and "--max-bytes-element" in response.json()["error"]
