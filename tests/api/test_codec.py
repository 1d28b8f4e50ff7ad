"""The v2 body codec: binary tensor data layout, and errors that name the problem."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from model_manager.api.codec import decode_request, encode_response
from model_manager.errors import InvalidInput
from model_manager.serving import InferenceRequest, InferenceResponse, InferOutput, RequestedOutput


def binary_body(inputs: list[dict[str, object]], data: bytes) -> tuple[bytes, str]:
    header = json.dumps({"inputs": inputs}).encode()
    return header + data, str(len(header))


def bytes_elements(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def test_binary_bytes_elements_are_length_prefixed() -> None:
    data = bytes_elements(b"one", b"", b"\xff\x00")
    body, length = binary_body([{"name": "t", "datatype": "BYTES", "shape": [3],
                                 "parameters": {"binary_data_size": len(data)}}], data)
    decoded = decode_request(body, length).inputs[0].data
    assert decoded.tolist() == [b"one", b"", b"\xff\x00"]


@pytest.mark.parametrize(("data", "count", "expected"), [
    (bytes_elements(b"a")[:-1], 1, "runs past its data"),
    (bytes_elements(b"a", b"b"), 1, "more than 1 elements"),
    (b"\x01\x00", 1, "ends before element 0"),
])
def test_malformed_binary_bytes(data: bytes, count: int, expected: str) -> None:
    body, length = binary_body([{"name": "t", "datatype": "BYTES", "shape": [count],
                                 "parameters": {"binary_data_size": len(data)}}], data)
    with pytest.raises(InvalidInput, match=expected):
        decode_request(body, length)


def test_binary_fixed_size_needs_exact_byte_count() -> None:
    body, length = binary_body([{"name": "t", "datatype": "FP32", "shape": [2],
                                 "parameters": {"binary_data_size": 4}}], bytes(4))
    with pytest.raises(InvalidInput, match="needs 8 B, binary_data_size says 4 bytes less"):
        decode_request(body, length)


@pytest.mark.parametrize("size", [True, 8.0, -1, "8"])
def test_a_binary_data_size_that_is_not_a_byte_count_is_refused(size: object) -> None:
    body, length = binary_body([{"name": "t", "datatype": "FP64", "shape": [1],
                                 "parameters": {"binary_data_size": size}}], bytes(8))
    with pytest.raises(InvalidInput, match="input 't': binary_data_size must be a byte count"):
        decode_request(body, length)


def test_two_binary_inputs_are_read_in_order() -> None:
    a, b = np.arange(3, dtype="<i4"), np.array([1.5, -2.5], dtype="<f8")
    body, length = binary_body(
        [{"name": "a", "datatype": "INT32", "shape": [3], "parameters": {"binary_data_size": 12}},
         {"name": "j", "datatype": "BOOL", "shape": [2], "data": [True, False]},
         {"name": "b", "datatype": "FP64", "shape": [2], "parameters": {"binary_data_size": 16}}],
        a.tobytes() + b.tobytes())
    decoded = {t.name: t.data.tolist() for t in decode_request(body, length).inputs}
    assert decoded == {"a": [0, 1, 2], "j": [True, False], "b": [1.5, -2.5]}


@pytest.mark.parametrize(("doc", "expected"), [
    ({"inputs": [{"name": "t", "datatype": "FP32", "shape": [1]}]}, "neither 'data' nor"),
    ({"inputs": [{"name": "t", "datatype": "FP32", "shape": [1], "data": [1]}], "id": 7},
     "'id' must be a string"),
    ({"inputs": [{"name": "t", "datatype": "BOOL", "shape": [1], "data": [1]}]}, "not BOOL"),
    ({"inputs": [{"name": "t", "datatype": "INT8", "shape": [1], "data": [1.5]}]}, "not INT8"),
    ({"inputs": [{"name": "t", "datatype": "FP32", "shape": [1], "data": [True]}]}, "not FP32"),
    ({"inputs": [{"name": "t", "datatype": "BYTES", "shape": [1], "data": [1]}]}, "must be strings"),
    ({"inputs": [{"name": "t", "datatype": "FP32", "shape": [1], "data": [1]}],
      "outputs": [{"name": "o", "parameters": {"classification": 2}}]}, "classification"),
])
def test_json_errors_name_the_problem(doc: dict[str, object], expected: str) -> None:
    with pytest.raises(InvalidInput, match=expected):
        decode_request(json.dumps(doc).encode(), None)


def test_encode_binary_bytes_and_json_outputs() -> None:
    response = InferenceResponse("m", 3, (
        InferOutput("label", "BYTES", np.array([b"cat", "dog"], dtype=object)),
        InferOutput("score", "FP32", np.array([0.5, 0.25], dtype=np.float32))), id="r1")
    request = InferenceRequest((), (RequestedOutput("label", binary=True), RequestedOutput("score")))
    body, headers = encode_response(response, request)
    length = int(dict(headers)[b"inference-header-content-length"])
    header = json.loads(body[:length])
    assert header["model_version"] == "3" and header["id"] == "r1"
    assert header["outputs"][1] == {"name": "score", "datatype": "FP32", "shape": [2],
                                    "data": [0.5, 0.25]}
    assert body[length:] == bytes_elements(b"cat", b"dog")


def test_all_json_response_has_no_binary_header() -> None:
    response = InferenceResponse("m", 1, (InferOutput("y", "INT64", np.array([[1, 2]])),))
    body, headers = encode_response(response, InferenceRequest(()))
    assert headers == [(b"content-type", b"application/json")]
    assert json.loads(body)["outputs"][0]["shape"] == [1, 2]


def test_deep_parameters_and_data_are_refused_without_recursion() -> None:
    deep: list[object] = []
    for _ in range(40):
        deep = [deep]
    doc = {"inputs": [{"name": "t", "datatype": "FP32", "shape": [1], "data": [1],
                       "parameters": {"p": deep}}]}
    with pytest.raises(InvalidInput, match="input 't' parameters nests"):
        decode_request(json.dumps(doc).encode(), None)
    texts = (b'{"inputs": [{"name": "t", "datatype": "BYTES", "shape": [1], "data": '
             + b"[" * 1000 + b'"a"' + b"]" * 1000 + b"}]}")
    with pytest.raises(InvalidInput, match="more than 64 levels deep"):
        decode_request(texts, None)
    shaped = (b'{"inputs": [{"name": "t", "datatype": "FP32", "shape": '
              + b"[" * 1000 + b"]" * 1000 + b', "data": [1]}]}')
    with pytest.raises(InvalidInput, match=r"shape must be a list .* got \[\[\.\.\.\]\]"):
        decode_request(shaped, None)


@pytest.mark.parametrize("length", ["9" * 5000, "\u00b2", "\u0663", "-1", "1e3"])
def test_a_header_length_that_is_not_a_byte_count_is_refused(length: str) -> None:
    with pytest.raises(InvalidInput, match="Inference-Header-Content-Length must be a byte count"):
        decode_request(b"{}", length)
