"""Hostile requests against the real server: no 500, no hang, and it keeps serving.

The management API is fuzzed from its own OpenAPI document (schemathesis); the v2 inference
endpoint with hypothesis-made bodies: valid and corrupted JSON, binary tensor headers with lying
lengths, huge and negative shapes, wrong datatypes and deep nesting; gRPC's ModelInfer with
random and corrupted messages. ``make test`` runs a bounded
number of examples; ``make fuzz`` sets MODEL_MANAGER_FUZZ_EXAMPLES far higher.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from tritonclient.grpc import service_pb2 as triton_pb

from tests.conftest import IrisFiles
from tests.onnx_models import offset_model
from tests.support import ServerProcess, push

EXAMPLES = int(os.environ.get("MODEL_MANAGER_FUZZ_EXAMPLES", "150"))
"""Examples per v2 property; the management API gets a tenth of it per operation."""
HOSTILE = {400, 401, 403, 404, 405, 409, 413, 415, 422, 429}
"""What a hostile request may get: the caller's fault or, under load, "retry later"."""
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@dataclass
class Target:
    server: ServerProcess
    headers: dict[str, str]  # an admin key's: with keys, every /api call needs one
    baseline_mib: float = 0.0
    """The server's resident memory before any fuzzing, with both models loaded."""


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, iris: IrisFiles) -> Iterator[Target]:
    """A server with an admin key, an FP32 ONNX model and an FP64 scikit-learn model."""
    folder = tmp_path_factory.mktemp("fuzz")
    server = ServerProcess(folder / "var", "--max-upload-size", "1MiB", "--predict-timeout", "5")
    key = server.cli("keys", "create", "--role", "admin", "--name", "fuzz").stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, headers=headers) as client:
        assert push(client, "fuzz-onnx", offset_model(folder / "m.onnx", 1.0)).status_code == 201
        assert push(client, "fuzz-sklearn", iris.skops).status_code == 201
        for offset in (1.0, 2.0):  # the management fuzzing's own model, which it may wreck
            model = offset_model(folder / f"t{offset}.onnx", offset)
            assert push(client, "fuzz-target", model).status_code == 201
        target = Target(server, headers)
        assert_still_serving(client)
        sample = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4],
                              "data": [5.1, 3.5, 1.4, 0.2]}]}
        assert client.post("/v2/models/fuzz-sklearn/infer", json=sample).status_code == 200
        target.baseline_mib = rss_mib(target)
    yield target
    server.stop()


@pytest.fixture(scope="module")
def client(target: Target) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=target.server.url, headers=target.headers, timeout=10) as http:
        yield http


def rss_mib(target: Target) -> float:
    status = Path(f"/proc/{target.server.process.pid}/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(kib) / 1024


def assert_still_serving(http: httpx.Client) -> None:
    assert http.get("/v2/health/ready").status_code == 200
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    answer = http.post("/v2/models/fuzz-onnx/infer", json=body)
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [2, 3, 4, 5]


# -- the management API, from its OpenAPI document -----------------------------------------------

def test_the_management_api_never_fails_with_a_server_error(target: Target) -> None:
    """Every /api operation, with bodies and parameters that fit its schema and ones that do
    not (one hypothesis run per operation, so a failure names its operation and case)."""
    schema = schemathesis.openapi.from_url(f"{target.server.url}/openapi.json",
                                          headers=target.headers)
    # Revoking the fuzzer's own key would only turn the rest of the run into 401s.
    schema = schema.include(path_regex="^/api/").exclude(path_regex="^/api/keys/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20

    for operation in operations:
        cases = (operation.as_strategy(GenerationMode.POSITIVE)
                 | operation.as_strategy(GenerationMode.NEGATIVE))
        # Half the cases name a model and version that exist, or few would get past a 404.
        real = st.none() | st.tuples(st.just("fuzz-target"),
                                     st.sampled_from(["1", "2", "3", "latest", "production"]))

        @settings(FUZZ, max_examples=max(EXAMPLES // 10, 5))
        @given(case=cases, real=real)
        def call(case: Any, real: tuple[str, str] | None) -> None:
            if real and isinstance(case.path_parameters, dict):
                if "name" in case.path_parameters:
                    case.path_parameters["name"] = real[0]
                if "version" in case.path_parameters:
                    case.path_parameters["version"] = real[1]
            response = case.call(headers=target.headers, timeout=10)
            case.validate_response(response, checks=[not_a_server_error])

        call()


# -- v2 inference bodies -------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5),
                           max_leaves=30)
datatypes = st.sampled_from(["BOOL", "UINT8", "UINT64", "INT8", "INT32", "INT64", "FP16", "FP32",
                             "FP64", "BYTES", "BF16", "fp32", "", "STRING", "COMPLEX64"])
dims = st.integers(-3, 8) | st.sampled_from([2**31, 2**62, 2**64, 10**30, -(2**63)])
shapes = st.lists(dims, max_size=5) | json_values
tensors = st.fixed_dictionaries(
    {"name": st.sampled_from(["x", "input", "X", ""]) | st.text(max_size=8),
     "datatype": datatypes | json_scalars, "shape": shapes,
     "data": st.lists(json_scalars, max_size=40) | json_values},
    optional={"parameters": st.dictionaries(st.sampled_from(["binary_data_size", "content_type"]),
                                            json_scalars, max_size=2)})
requests = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=4) | json_values},
    optional={"id": json_scalars, "parameters": json_values,
              "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=5)},
                                                        optional={"parameters": json_values}),
                                  max_size=3)})
def valid_rows(n: int) -> st.SearchStrategy[list[float]]:
    return st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False),
                    min_size=n, max_size=n)


valid = st.integers(1, 8).flatmap(lambda rows: valid_rows(rows * 4).map(lambda data: {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 4], "data": data}]}))
"""Bodies fuzz-onnx answers; corrupting them probes the parser near the path that works."""
models = st.sampled_from(["fuzz-onnx", "fuzz-sklearn", "fuzz-onnx/versions/1",
                          "fuzz-sklearn/versions/7", "nope"])


def corrupt(raw: bytes, data: st.DataObject) -> bytes:
    """Truncate, splice in random bytes, or repeat a slice."""
    if not raw:
        return raw
    cut = data.draw(st.integers(0, len(raw)))
    how = data.draw(st.sampled_from(["truncate", "splice", "repeat"]))
    if how == "truncate":
        return raw[:cut]
    if how == "splice":
        return raw[:cut] + data.draw(st.binary(min_size=1, max_size=16)) + raw[cut:]
    return raw[:cut] + raw[cut // 2:cut] * data.draw(st.integers(2, 50)) + raw[cut:]


def check(response: httpx.Response) -> None:
    assert response.status_code == 200 or response.status_code in HOSTILE, response.text
    if response.status_code != 200:
        assert isinstance(response.json()["error"], str)


@FUZZ
@given(model=models, body=requests | valid, data=st.data())
def test_v2_json_bodies_get_an_answer_or_a_clear_error(client: httpx.Client, model: str,
                                                       body: dict[str, Any],
                                                       data: st.DataObject) -> None:
    raw = json.dumps(body).encode()
    if data.draw(st.booleans()):
        raw = corrupt(raw, data)
    check(client.post(f"/v2/models/{model}/infer", content=raw,
                      headers={"content-type": "application/json"}))


@FUZZ
@given(header=requests | valid, payload=st.binary(max_size=256), data=st.data())
def test_binary_bodies_with_lying_lengths_get_a_clear_error(client: httpx.Client,
                                                            header: dict[str, Any],
                                                            payload: bytes,
                                                            data: st.DataObject) -> None:
    raw = json.dumps(header).encode()
    claimed = data.draw(st.sampled_from(["exact", "more", "less", "negative", "junk", "huge"]))
    length = {"exact": str(len(raw)), "more": str(len(raw) + len(payload) + 1),
              "less": str(max(len(raw) - 3, 0)), "negative": "-5", "junk": "12abc",
              "huge": str(2**70)}[claimed]
    check(client.post("/v2/models/fuzz-onnx/infer", content=raw + payload,
                      headers={"content-type": "application/octet-stream",
                               "inference-header-content-length": length}))


def test_binary_tensors_whose_sizes_lie_about_the_data(client: httpx.Client) -> None:
    data = struct.pack("<4f", 1, 2, 3, 4)
    for size, status in ((len(data), 200), (len(data) + 4, 400), (len(data) - 4, 400), (-1, 400),
                         (0, 400), (2**63, 400)):
        header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                         "parameters": {"binary_data_size": size}}]}).encode()
        answer = client.post("/v2/models/fuzz-onnx/infer", content=header + data,
                             headers={"inference-header-content-length": str(len(header))})
        assert answer.status_code == status, (size, answer.text)
        check(answer)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_refused(client: httpx.Client, depth: int) -> None:
    raw = b"[" * depth + b"]" * depth
    for body in (raw, b'{"inputs": ' + raw + b"}",
                 b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": '
                 + raw + b"}]}"):
        answer = client.post("/v2/models/fuzz-onnx/infer", content=body)
        assert answer.status_code == 400, answer.text
        check(answer)


# -- gRPC ModelInfer messages -------------------------------------------------------------------

GRPC_HOSTILE = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION}
"""What a hostile gRPC request may get: REST's HOSTILE, as status codes."""

int64s = st.integers(-(2**63), 2**63 - 1)
grpc_parameters = st.dictionaries(
    st.text(max_size=8), st.one_of(st.booleans().map(lambda v: {"bool_param": v}),
                                   int64s.map(lambda v: {"int64_param": v}),
                                   st.text(max_size=10).map(lambda v: {"string_param": v}),
                                   st.floats().map(lambda v: {"double_param": v})), max_size=3)
contents = st.fixed_dictionaries({}, optional={
    "bool_contents": st.lists(st.booleans(), max_size=12),
    "int_contents": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=12),
    "int64_contents": st.lists(int64s, max_size=12),
    "uint64_contents": st.lists(st.integers(0, 2**64 - 1), max_size=12),
    "fp32_contents": st.lists(st.floats(width=32), max_size=12),
    "fp64_contents": st.lists(st.floats(), max_size=12),
    "bytes_contents": st.lists(st.binary(max_size=12), max_size=12)})
grpc_tensors = st.fixed_dictionaries(
    {"name": st.sampled_from(["x", "input", ""]) | st.text(max_size=8),
     "datatype": datatypes, "shape": st.lists(st.integers(-3, 8) | int64s, max_size=5)},
    optional={"parameters": grpc_parameters, "contents": contents})
grpc_requests = st.fixed_dictionaries(
    {"model_name": st.sampled_from(["fuzz-onnx", "fuzz-sklearn", "nope", ""]),
     "model_version": st.sampled_from(["", "1", "7", "production", "-1"]),
     "inputs": st.lists(grpc_tensors, max_size=4)},
    optional={"id": st.text(max_size=8), "parameters": grpc_parameters,
              "raw_input_contents": st.lists(st.binary(max_size=64), max_size=4),
              "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=5)}, optional={
                  "parameters": grpc_parameters}), max_size=3)})
valid_grpc = st.integers(1, 8).flatmap(lambda rows: valid_rows(rows * 4).map(lambda data: {
    "model_name": "fuzz-onnx", "inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 4],
                                           "contents": {"fp32_contents": data}}]}))


@pytest.fixture(scope="module")
def grpc_infer(target: Target) -> Iterator[Any]:
    """ModelInfer on a plain channel, taking and giving bytes, with the admin key."""
    with grpc.insecure_channel(target.server.grpc_address) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        metadata = (("authorization", target.headers["Authorization"]),)
        yield lambda body: call(body, metadata=metadata, timeout=10)


@FUZZ
@given(message=grpc_requests | valid_grpc, data=st.data())
def test_grpc_infer_messages_get_an_answer_or_a_clear_status(grpc_infer: Any,
                                                             message: dict[str, Any],
                                                             data: st.DataObject) -> None:
    raw = triton_pb.ModelInferRequest(**message).SerializeToString()
    if data.draw(st.booleans()):
        raw = corrupt(raw, data)
    try:
        answer = triton_pb.ModelInferResponse.FromString(grpc_infer(raw))
    except grpc.RpcError as failure:
        assert failure.code() in GRPC_HOSTILE, (failure.code(), failure.details())
        assert failure.details()
    else:
        assert answer.outputs


def test_after_the_fuzzing_the_server_serves_with_bounded_memory(target: Target,
                                                                  client: httpx.Client) -> None:
    """Runs last in this module: the fuzzing above must have left the server whole, and its
    memory near where it was before any of it."""
    assert_still_serving(client)
    for _ in range(3):  # the heaviest hostile bodies again: memory must come back down
        test_deeply_nested_json_is_refused(client, 100_000)
        big = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2**20, 4],
                           "data": [0.5] * 2**20}]}
        check(client.post("/v2/models/fuzz-onnx/infer", json=big))
    assert_still_serving(client)
    assert rss_mib(target) - target.baseline_mib < 100  # 5 MiB in a run of `make test`
