"""Every v2 datatype travels through the real server, as JSON and as binary tensor data."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
import tritonclient.http as triton
from onnx import TensorProto, helper

from tests.support import ServerProcess, push

DATATYPES = {
    "BOOL": (TensorProto.BOOL, np.bool_), "UINT8": (TensorProto.UINT8, np.uint8),
    "UINT16": (TensorProto.UINT16, np.uint16), "UINT32": (TensorProto.UINT32, np.uint32),
    "UINT64": (TensorProto.UINT64, np.uint64), "INT8": (TensorProto.INT8, np.int8),
    "INT16": (TensorProto.INT16, np.int16), "INT32": (TensorProto.INT32, np.int32),
    "INT64": (TensorProto.INT64, np.int64), "FP16": (TensorProto.FLOAT16, np.float16),
    "FP32": (TensorProto.FLOAT, np.float32), "FP64": (TensorProto.DOUBLE, np.float64),
    "BYTES": (TensorProto.STRING, np.object_),
}


def identity_model(path: Path, elem_type: int) -> Path:
    """An ONNX graph that returns its [-1, 3] input unchanged as 'echo'."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["echo"])], "identity",
        [helper.make_tensor_value_info("x", elem_type, [None, 3])],
        [helper.make_tensor_value_info("echo", elem_type, [None, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def sample(datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([[b"a", b"", "héllo".encode()], [b"\x00\x01", b"long " * 50, b"z"]],
                        dtype=object)
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    dtype = DATATYPES[datatype][1]
    info = np.finfo(dtype) if np.issubdtype(dtype, np.floating) else np.iinfo(dtype)
    return np.array([[info.min, 0, 1], [info.max, 2, 3]], dtype=dtype)


@pytest.fixture(scope="module")
def identities(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("identity")
    with httpx.Client(base_url=server.url) as client:
        for datatype, (elem_type, _) in DATATYPES.items():
            path = identity_model(folder / f"{datatype}.onnx", elem_type)
            assert push(client, f"echo-{datatype.lower()}", path).status_code == 201


# JSON carries BYTES as UTF-8 strings, not arbitrary bytes: see test_bytes_as_json_strings.
ROUNDTRIPS = [pytest.param(datatype, binary, id=f"{datatype}-{'binary' if binary else 'json'}")
              for datatype in DATATYPES for binary in (True, False)
              if binary or datatype != "BYTES"]


@pytest.mark.parametrize(("datatype", "binary"), ROUNDTRIPS)
def test_roundtrip(server: ServerProcess, identities: None, datatype: str, binary: bool) -> None:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    data = sample(datatype)
    tensor = triton.InferInput("x", list(data.shape), datatype)
    tensor.set_data_from_numpy(data, binary_data=binary)
    result = client.infer(f"echo-{datatype.lower()}", [tensor],
                          outputs=[triton.InferRequestedOutput("echo", binary_data=binary)])
    echoed = result.as_numpy("echo")
    assert echoed.shape == data.shape
    assert result.get_output("echo")["datatype"] == datatype
    np.testing.assert_array_equal(echoed, data)


def test_bytes_as_json_strings(server: ServerProcess, identities: None) -> None:
    body = {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1, 3],
                        "data": [["prompt one", "", "naïve"]]}]}
    answer = httpx.post(f"{server.url}/v2/models/echo-bytes/infer", json=body).json()
    assert answer["outputs"] == [{"name": "echo", "datatype": "BYTES", "shape": [1, 3],
                                  "data": ["prompt one", "", "naïve"]}]


def test_mixed_binary_and_json_outputs(server: ServerProcess, identities: None) -> None:
    """The request-level binary_data_output default applies where an output says nothing."""
    body = {"id": "mix", "parameters": {"binary_data_output": True},
            "inputs": [{"name": "x", "datatype": "INT32", "shape": [1, 3], "data": [1, 2, 3]}]}
    response = httpx.post(f"{server.url}/v2/models/echo-int32/infer", json=body)
    header_length = int(response.headers["inference-header-content-length"])
    assert response.headers["content-type"] == "application/octet-stream"
    header = httpx.Response(200, content=response.content[:header_length]).json()
    assert header["id"] == "mix"
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 12}
    assert np.frombuffer(response.content[header_length:], "<i4").tolist() == [1, 2, 3]


def test_nested_json_data_and_version_by_alias(server: ServerProcess, identities: None) -> None:
    httpx.put(f"{server.url}/api/models/echo-fp64/aliases/stable", json={"version": 1})
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 3],
                        "data": [[1.5, 2, 3], [4, 5, 6.25]]}]}
    answer = httpx.post(f"{server.url}/v2/models/echo-fp64/versions/stable/infer", json=body).json()
    assert answer["model_version"] == "1"
    assert answer["outputs"][0]["data"] == [1.5, 2, 3, 4, 5, 6.25]
    assert len(answer["id"]) == 32  # generated when the request has none


def test_integer_out_of_range_is_refused(server: ServerProcess, identities: None) -> None:
    body = {"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1, 3], "data": [1, 2, 300]}]}
    response = httpx.post(f"{server.url}/v2/models/echo-uint8/infer", json=body)
    assert response.status_code == 400
    assert "UINT8" in response.json()["error"]
