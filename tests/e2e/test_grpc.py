"""The gRPC Open Inference Protocol, through unchanged clients: tritonclient.grpc, Triton's own
messages on a plain channel, the standard health and reflection services."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.conftest import IrisFiles
from tests.e2e.test_v2_datatypes import DATATYPES, identity_model, sample
from tests.support import ServerProcess, eventually, push

TYPED = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
         "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
         "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
         "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
"""Where typed contents carry each datatype (FP16 only travels raw)."""

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("grpc")
    process = ServerProcess(folder / "var", "--demo", "--max-request-size", "4MiB",
                            "--max-tensor-elements", "100000")
    with httpx.Client(base_url=process.url) as client:
        for datatype, (elem_type, _) in DATATYPES.items():
            path = identity_model(folder / f"{datatype}.onnx", elem_type)
            assert push(client, f"echo-{datatype.lower()}", path).status_code == 201
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.grpc_address) as c:
        yield c


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def rest_infer(server: ServerProcess, model: str, x: np.ndarray, version: str | None = None
               ) -> dict[str, Any]:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                        "data": x.tolist()}]}
    answer = httpx.post(server.url + path, json=body)
    assert answer.status_code == 200, answer.text
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in answer.json()["outputs"]}


def typed_request(model: str, name: str, datatype: str, data: np.ndarray, **fields: Any
                  ) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, **fields)
    tensor = request.inputs.add(name=name, datatype=datatype, shape=data.shape)
    getattr(tensor.contents, TYPED[datatype]).extend(data.ravel().tolist())
    return request


def typed_outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    assert not response.raw_output_contents
    return {o.name: np.asarray(list(getattr(o.contents, TYPED[o.datatype])),
                               dtype=DATATYPES[o.datatype][1]).reshape(o.shape)
            for o in response.outputs}


def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as failure:
        call()
    return failure.value.code(), failure.value.details()


def test_health_metadata_and_readiness(client: triton.InferenceServerClient,
                                       server: ServerProcess) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", model_version="1")
    assert client.is_model_ready("iris", model_version="production")
    assert not client.is_model_ready("no-such-model")
    assert not client.is_model_ready("iris", model_version="7")
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "ml-model-manager"
    assert "binary_tensor_data" in metadata["extensions"]
    rest = httpx.get(f"{server.url}/v2/models/iris").json()
    grpc_metadata = client.get_model_metadata("iris", as_json=True)
    for tensors in ("inputs", "outputs"):
        for spec in grpc_metadata[tensors]:
            spec["shape"] = [int(d) for d in spec["shape"]]
    assert grpc_metadata == rest


@pytest.mark.parametrize("model", ["iris", "iris-sklearn"])
def test_raw_infer_equals_the_rest_path(client: triton.InferenceServerClient,
                                        server: ServerProcess, iris: IrisFiles, model: str) -> None:
    x = iris.x.astype(np.float32 if model == "iris" else np.float64)
    tensor = triton.InferInput("input", list(x.shape), "FP32" if model == "iris" else "FP64")
    tensor.set_data_from_numpy(x)
    result = client.infer(model, [tensor], request_id="req-7",
                          parameters={"note": "kept", "rank": 3})
    rest = rest_infer(server, "iris", iris.x.astype(np.float32)) if model == "iris" else None
    np.testing.assert_array_equal(result.as_numpy("label"), iris.model.predict(iris.x))
    np.testing.assert_allclose(result.as_numpy("probabilities"), iris.model.predict_proba(iris.x),
                               rtol=1e-5, atol=1e-6)
    if rest is not None:
        np.testing.assert_array_equal(result.as_numpy("label"), rest["label"])
        np.testing.assert_array_equal(result.as_numpy("probabilities"),
                                      rest["probabilities"].astype(np.float32))
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (model, "1", "req-7")
    assert response.parameters["note"].string_param == "kept"
    assert response.parameters["rank"].int64_param == 3


def test_typed_contents_in_typed_contents_out(stub: Any, server: ServerProcess) -> None:
    response = stub.ModelInfer(typed_request("iris", "input", "FP32", X, id="typed"))
    outputs = typed_outputs(response)
    rest = rest_infer(server, "iris", X)
    np.testing.assert_array_equal(outputs["label"], rest["label"])
    np.testing.assert_allclose(outputs["probabilities"], rest["probabilities"], rtol=1e-6)
    assert response.id == "typed"


def test_requested_outputs_versions_and_aliases(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("input", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    for version in ("1", "production"):
        result = client.infer("iris", [tensor], model_version=version,
                              outputs=[triton.InferRequestedOutput("probabilities")])
        assert result.get_response().model_version == "1"
        assert result.as_numpy("label") is None
        assert result.as_numpy("probabilities").shape == (3, 3)


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_every_datatype_raw(client: triton.InferenceServerClient, datatype: str) -> None:
    data = sample(datatype)
    tensor = triton.InferInput("x", list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    result = client.infer(f"echo-{datatype.lower()}", [tensor])
    assert result.get_output("echo").datatype == datatype
    echoed = result.as_numpy("echo")
    assert echoed.shape == data.shape
    np.testing.assert_array_equal(echoed, data)


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "FP16"])
def test_every_datatype_typed(stub: Any, datatype: str) -> None:
    data = sample(datatype)
    response = stub.ModelInfer(typed_request(f"echo-{datatype.lower()}", "x", datatype, data))
    echoed = typed_outputs(response)["echo"]
    assert response.outputs[0].datatype == datatype
    np.testing.assert_array_equal(echoed, data)


def test_fp16_typed_is_refused_with_a_pointer_to_raw(stub: Any) -> None:
    request = pb.ModelInferRequest(model_name="echo-fp16")
    request.inputs.add(name="x", datatype="FP16", shape=[1, 3])
    code, message = code_of(lambda: stub.ModelInfer(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents" in message


def test_repository_index_load_and_unload(client: triton.InferenceServerClient,
                                          server: ServerProcess) -> None:
    client.load_model("echo-int32")
    index = {m.name: m.state for m in client.get_model_repository_index().models}
    assert index["echo-int32"] == "READY"
    client.unload_model("echo-int32")
    index = {m.name: m.state for m in client.get_model_repository_index().models}
    assert index["echo-int32"] == "UNAVAILABLE"
    cache = httpx.get(f"{server.url}/api/cache").json()
    assert "echo-int32" not in {e["model"] for e in cache["loaded"]}
    with pytest.raises(InferenceServerException, match="not registered"):
        client.load_model("no-such-model")


def test_stream_infer_answers_each_request_in_order(client: triton.InferenceServerClient) -> None:
    answers: list[tuple[Any, Any]] = []
    client.start_stream(callback=lambda result, error: answers.append((result, error)))
    try:
        for i in range(3):
            tensor = triton.InferInput("input", [1, 4], "FP32")
            tensor.set_data_from_numpy(X[i:i + 1])
            client.async_stream_infer("iris", [tensor], request_id=f"s{i}")
        bad = triton.InferInput("input", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
        client.async_stream_infer("iris", [bad], request_id="bad")
        eventually(lambda: len(answers) == 4, what="four stream answers")
    finally:
        client.stop_stream()
    assert [r.get_response().id for r, _ in answers[:3]] == ["s0", "s1", "s2"]
    assert answers[3][0] is None
    assert "shape" in str(answers[3][1])


def test_grpc_requests_count_in_usage_like_rest(client: triton.InferenceServerClient,
                                                server: ServerProcess) -> None:
    def total() -> int:
        usage = httpx.get(f"{server.url}/api/models/echo-uint8/usage").json()
        return int(sum(v["requests"] for v in usage["versions"]))

    before = total()
    data = sample("UINT8")
    tensor = triton.InferInput("x", list(data.shape), "UINT8")
    tensor.set_data_from_numpy(data)
    for _ in range(5):
        client.infer("echo-uint8", [tensor])
    eventually(lambda: total() == before + 5, what="five gRPC requests counted")


def test_health_service_and_reflection(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            list_services="")]))
        services = {s.name for a in answers for s in a.list_services_response.service}
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services


def bad_requests() -> list[Any]:
    def raw(model: str, datatype: str, shape: list[int], data: bytes) -> pb.ModelInferRequest:
        request = pb.ModelInferRequest(model_name=model)
        request.inputs.add(name="x" if model.startswith("echo") else "input", datatype=datatype,
                           shape=shape)
        request.raw_input_contents.append(data)
        return request

    two_raw = raw("iris", "FP32", [1, 4], bytes(16))
    two_raw.raw_input_contents.append(bytes(16))
    classification = raw("iris", "FP32", [1, 4], bytes(16))
    classification.outputs.add(name="label").parameters["classification"].int64_param = 2
    no_inputs = pb.ModelInferRequest(model_name="iris")
    short = typed_request("iris", "input", "FP32", np.zeros((1, 4)))
    del short.inputs[0].contents.fp32_contents[-1]
    unknown_output = typed_request("iris", "input", "FP32", np.zeros((1, 4)))
    unknown_output.outputs.add(name="nope")
    c = grpc.StatusCode
    return [
        pytest.param(raw("no-such-model", "FP32", [1, 4], bytes(16)), c.NOT_FOUND, "not registered",
                     id="unknown-model"),
        pytest.param(raw("iris", "FP32", [1, 3], bytes(12)), c.INVALID_ARGUMENT, "shape",
                     id="wrong-shape"),
        pytest.param(raw("iris", "INT32", [1, 4], bytes(16)), c.INVALID_ARGUMENT, "FP32",
                     id="wrong-datatype"),
        pytest.param(raw("iris", "FP32", [1, 4], bytes(12)), c.INVALID_ARGUMENT, "4 bytes less",
                     id="raw-size-lies"),
        pytest.param(raw("iris", "FP99", [1, 4], bytes(16)), c.INVALID_ARGUMENT, "unknown datatype",
                     id="unknown-datatype"),
        pytest.param(raw("iris", "FP32", [-1, 4], bytes(16)), c.INVALID_ARGUMENT, "non-negative",
                     id="negative-dimension"),
        pytest.param(raw("iris", "FP32", [2**40, 4], bytes(16)), c.RESOURCE_EXHAUSTED,
                     "--max-tensor-elements", id="huge-shape"),
        pytest.param(raw("echo-bytes", "BYTES", [1, 3], b"\x10\x00\x00\x00ab"),
                     c.INVALID_ARGUMENT, "runs past its data", id="bytes-length-lies"),
        pytest.param(raw("echo-bytes", "BYTES", [1, 3], b"\xff\xff\xff\x7f"),
                     c.RESOURCE_EXHAUSTED, "--max-bytes-element", id="bytes-element-too-large"),
        pytest.param(two_raw, c.INVALID_ARGUMENT, "raw_input_contents holds 2", id="extra-raw"),
        pytest.param(classification, c.INVALID_ARGUMENT, "classification", id="classification"),
        pytest.param(no_inputs, c.INVALID_ARGUMENT, "non-empty 'inputs'", id="no-inputs"),
        pytest.param(typed_request("iris", "input", "FP32", np.zeros((1, 4)), model_version="9"),
                     c.NOT_FOUND, "9", id="unknown-version"),
        pytest.param(typed_request("iris", "input", "FP32", np.zeros((1, 4)),
                                   model_version="canary"),
                     c.NOT_FOUND, "no version or alias 'canary'", id="unknown-alias"),
        pytest.param(short, c.INVALID_ARGUMENT, "contents.fp32_contents has 3", id="typed-short"),
        pytest.param(typed_request("iris", "x", "FP32", np.zeros((1, 4))), c.INVALID_ARGUMENT,
                     "missing ['input']", id="wrong-input-name"),
        pytest.param(typed_request("iris", "input", "FP32", np.zeros((1, 2, 2))),
                     c.INVALID_ARGUMENT, "must have shape [-1, 4]", id="wrong-rank"),
        pytest.param(unknown_output, c.INVALID_ARGUMENT, "no output ['nope']",
                     id="unknown-output"),
        pytest.param(typed_request("echo-int8", "x", "INT8", np.array([[300, 0, 1]])),
                     c.INVALID_ARGUMENT, "out of range", id="int8-out-of-range"),
        pytest.param(raw("iris", "FP32", [1, 4], bytes(5 * 2**20)), c.RESOURCE_EXHAUSTED, "",
                     id="over-max-message-size"),
    ]


@pytest.mark.parametrize(("request_", "code", "words"), bad_requests())
def test_bad_requests_get_their_status_and_the_server_keeps_serving(
        stub: Any, request_: pb.ModelInferRequest, code: grpc.StatusCode, words: str) -> None:
    got, message = code_of(lambda: stub.ModelInfer(request_))
    assert got == code, message
    assert words in message
    assert typed_outputs(stub.ModelInfer(typed_request("iris", "input", "FP32", X)))["label"].size


def test_corrupted_messages_are_invalid_argument(server: ServerProcess, stub: Any) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        valid = typed_request("iris", "input", "FP32", X).SerializeToString()
        for body in (b"\xff" * 7, valid[:-3], b"\x0a\xff\xff\xff\xff\x0f"):
            code, _ = code_of(lambda body=body: infer(body))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert typed_outputs(stub.ModelInfer(typed_request("iris", "input", "FP32", X)))["label"].size


def test_api_keys_in_metadata_with_the_roles_of_rest(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "var", "--demo")
    try:
        admin = server.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip()
        predict = httpx.post(f"{server.url}/api/keys", json={"name": "svc", "role": "predict"},
                             headers={"x-api-key": admin}).json()["key"]
        with triton.InferenceServerClient(server.grpc_address) as client:
            tensor = triton.InferInput("input", list(X.shape), "FP32")
            tensor.set_data_from_numpy(X)
            assert client.is_server_live()  # health needs no key, as on REST
            with pytest.raises(InferenceServerException, match="needs an API key"):
                client.infer("iris", [tensor])
            bearer = {"authorization": f"Bearer {predict}"}
            assert client.infer("iris", [tensor], headers=bearer).as_numpy("label").size == 3
            assert client.infer("iris", [tensor], headers={"x-api-key": predict}).as_numpy(
                "label").size == 3
            with pytest.raises(InferenceServerException, match="may not call RepositoryModelLoad"):
                client.load_model("iris", headers=bearer)
            with pytest.raises(InferenceServerException, match="needs an API key"):
                client.infer("iris", [tensor], headers={"x-api-key": predict + "x"})
            client.load_model("iris", headers={"x-api-key": admin})
    finally:
        server.stop()


def test_cli_predict_over_grpc_answers_as_over_rest(server: ServerProcess) -> None:
    row = "[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]"
    over_grpc = server.cli("predict", "iris", "--input", row, "--grpc", server.grpc_address)
    over_rest = server.cli("predict", "iris", "--input", row)
    assert json.loads(over_grpc.stdout) == json.loads(over_rest.stdout)
    assert json.loads(over_grpc.stdout)["outputs"]["label"] == [0, 2]
    failed = server.cli("predict", "nope", "--input", row, "--grpc", server.grpc_address,
                        check=False)
    assert failed.returncode == 1
    assert "NOT_FOUND: model 'nope' is not registered" in failed.stderr


def test_grpcs_threads_run_as_batch_work_and_the_event_loop_does_not(
        client: triton.InferenceServerClient, server: ServerProcess) -> None:
    """gRPC's threads wait for the running one to block rather than preempt it (SCHED_BATCH);
    the event loop's thread (the main one) is woken at once when a request arrives
    (SCHED_OTHER). An operator sees it with `chrt -p`."""
    assert client.is_server_live()  # gRPC's threads have started
    pid = server.process.pid
    threads = {int(t.name): (t / "comm").read_text().strip()
               for t in Path(f"/proc/{pid}/task").iterdir()}
    grpcs = [t for t, name in threads.items() if name in ("event_engine", "grpc_global_tim")]
    assert len(grpcs) >= 2, threads
    assert os.sched_getscheduler(pid) == os.SCHED_OTHER
    assert {os.sched_getscheduler(t) for t in grpcs} == {os.SCHED_BATCH}
