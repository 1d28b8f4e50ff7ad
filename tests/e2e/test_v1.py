"""KServe V1 REST (`{"instances": [...]}`) against the real server: the same answers as v2 infer,
through the same router, with clear 400s for bodies V1 cannot read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.e2e.test_v2_datatypes import identity_model
from tests.onnx_models import offset_model
from tests.support import ServerProcess, push

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def two_input_model(path: Path) -> Path:
    """``total = a + b`` and ``difference = a - b`` over two [-1, 2] FP32 inputs."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["total"]), helper.make_node("Sub", ["a", "b"],
                                                                          ["difference"])],
        "two", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 2]) for n in "ab"],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 2])
         for n in ("total", "difference")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def summed_model(path: Path, per_column: bool) -> Path:
    """``echo`` (the [-1, 2] FP32 input) and ``total``: the sum of each column (shape [2]) when
    ``per_column``, else of everything (a scalar)."""
    axes = [numpy_helper.from_array(np.array([0], dtype=np.int64), "axes")] if per_column else []
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["echo"]),
         helper.make_node("ReduceSum", ["x", "axes"] if per_column else ["x"], ["total"],
                          keepdims=0)],
        "summed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("echo", TensorProto.FLOAT, [None, 2]),
         helper.make_tensor_value_info("total", TensorProto.FLOAT, [2] if per_column else [])],
        axes)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("v1")
    process = ServerProcess(folder / "var", "--demo", "--max-tensor-elements", "1000",
                            "--max-bytes-element", "64")
    lenient = {"allow_non_finite_inputs": True, "validation": {"policy": {"nan": "flag"}}}
    with httpx.Client(base_url=process.url) as client:
        assert push(client, "two", two_input_model(folder / "two.onnx")).status_code == 201
        assert push(client, "echo-bytes", identity_model(folder / "bytes.onnx",
                                                         TensorProto.STRING)).status_code == 201
        assert push(client, "lenient", identity_model(folder / "fp32.onnx", TensorProto.FLOAT),
                    metadata=json.dumps(lenient)).status_code == 201
        assert push(client, "summed", summed_model(folder / "s.onnx", False)).status_code == 201
        assert push(client, "by-column", summed_model(folder / "c.onnx", True)).status_code == 201
        for offset in (1, 2):  # version n answers x + n
            assert push(client, "canary", offset_model(folder / f"o{offset}.onnx",
                                                       float(offset))).status_code == 201
        assert client.put("/api/models/canary/aliases/production",
                          json={"version": 1}).status_code == 200
    yield process
    process.stop()


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def v2(http: httpx.Client, model: str, inputs: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    body = {"inputs": [{"name": name, "datatype": datatype, "shape": list(np.shape(data)),
                        "data": data} for name, (datatype, data) in inputs.items()]}
    answer = http.post(f"/v2/models/{model}/infer", json=body)
    assert answer.status_code == 200, answer.text
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]).tolist()
            for o in answer.json()["outputs"]}


def v1(http: httpx.Client, path: str, body: Any) -> list[Any]:
    answer = http.post(f"/v1/models/{path}:predict", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]  # type: ignore[no-any-return]


def rows_of(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(),
                                                                       strict=True)]


def test_instances_and_columns_answer_as_v2_infer(http: httpx.Client) -> None:
    expected = rows_of(v2(http, "iris", {"input": ("FP32", ROWS)}))
    assert [p["label"] for p in expected] == [0, 2, 1]
    assert v1(http, "iris", {"instances": ROWS}) == expected
    assert v1(http, "iris", {"inputs": ROWS}) == expected
    assert v1(http, "iris", {"inputs": {"input": ROWS}}) == expected
    assert v1(http, "iris", {"instances": [{"input": row} for row in ROWS]}) == expected
    assert_close(v1(http, "iris/versions/1", {"instances": ROWS[:1]}), expected[:1])
    assert_close(v1(http, "iris/versions/production", {"instances": ROWS[1:]}), expected[1:])


def assert_close(rows: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """The same labels, and probabilities to float precision: fewer rows take other kernels
    in onnxruntime on some processors, and the last bits may differ."""
    assert [r["label"] for r in rows] == [e["label"] for e in expected]
    for row, want in zip(rows, expected, strict=True):
        assert row["probabilities"] == pytest.approx(want["probabilities"], rel=1e-6, abs=1e-9)


def test_several_inputs_by_name(http: httpx.Client) -> None:
    a, b = [[1.0, 2.0], [3.0, 4.0]], [[0.5, 0.5], [1.0, -1.0]]
    expected = rows_of(v2(http, "two", {"a": ("FP32", a), "b": ("FP32", b)}))
    assert expected[1] == {"total": [4.0, 3.0], "difference": [2.0, 5.0]}
    assert v1(http, "two", {"instances": [{"a": a[i], "b": b[i]} for i in range(2)]}) == expected
    assert v1(http, "two", {"inputs": {"a": a, "b": b}}) == expected


def test_one_output_answers_its_rows_and_bytes_are_text(http: httpx.Client) -> None:
    texts = [["prompt", "", "naïve"], ["a", "b", "c"]]
    assert v1(http, "echo-bytes", {"instances": texts}) == texts


def test_non_finite_outputs_are_written_as_v2_writes_them(http: httpx.Client) -> None:
    values = b"[NaN, Infinity, -Infinity]"
    answer = http.post("/v1/models/lenient:predict", content=b'{"instances": [%s]}' % values)
    assert answer.status_code == 200, answer.text
    assert answer.text == '{"predictions":[[NaN,Infinity,-Infinity]]}'
    v2_body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": %s}]}'
    assert '"data":[NaN,Infinity,-Infinity]' in http.post("/v2/models/lenient/infer",
                                                          content=v2_body % values).text


def test_outputs_share_the_rows_or_are_refused(http: httpx.Client) -> None:
    rows = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert v1(http, "summed", {"instances": rows}) == [{"echo": row, "total": 21.0}
                                                       for row in rows]
    refused = http.post("/v1/models/by-column:predict", json={"instances": rows})
    assert refused.status_code == 400, refused.text
    assert "different first dimensions ({'echo': 3, 'total': 2})" in refused.json()["error"]


def test_the_traffic_policy_and_routing_key_apply_as_for_v2(http: httpx.Client) -> None:
    row = [1.0, 2.0, 3.0, 4.0]
    policy = {"routes": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]}
    assert http.put("/api/models/canary/traffic", json=policy).status_code == 200
    try:
        served = {}
        for key in (f"user-{i}" for i in range(20)):
            headers = {"X-Routing-Key": key}
            by_v2 = http.post("/v2/models/canary/infer", headers=headers, json={"inputs": [
                {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": row}]}).json()
            by_v1 = http.post("/v1/models/canary:predict", headers=headers,
                              json={"instances": [row]}).json()["predictions"][0]
            served[key] = int(by_v1[0] - row[0])
            assert served[key] == int(by_v2["model_version"]), key
        assert set(served.values()) == {1, 2}
        assert v1(http, "canary/versions/2", {"instances": [row]}) == [[3.0, 4.0, 5.0, 6.0]]
        assert v1(http, "canary/versions/production", {"instances": [row]}) == [[2.0, 3.0, 4.0,
                                                                                 5.0]]
    finally:
        assert http.delete("/api/models/canary/traffic").status_code == 204


def test_readiness_and_the_model_list(http: httpx.Client) -> None:
    assert http.get("/v1/models/iris").json() == {"name": "iris", "version": "1", "ready": True}
    assert http.get("/v1/models/iris/versions/production").json()["ready"] is True
    assert http.get("/v1/models/nope").status_code == 404
    assert {"iris", "iris-sklearn", "two", "echo-bytes"} <= set(http.get("/v1/models").json()[
        "models"])


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    ("iris", {"instances": []}, 400, '"instances" must be a non-empty list'),
    ("iris", {"rows": ROWS}, 400, 'either "instances"'),
    ("iris", {"instances": ROWS, "inputs": ROWS}, 400, 'either "instances"'),
    ("iris", [ROWS], 400, 'either "instances"'),
    ("iris", {"instances": [[5.1, 3.5, 1.4], [6.7, 3.0, 5.2, 2.3]]}, 400, "not all the same shape"),
    ("iris", {"instances": [["a", "b", "c", "d"]]}, 400, "not FP32"),
    ("iris", {"inputs": {"features": ROWS}}, 400, "no input ['features']"),
    ("iris", {"instances": [{"features": ROWS[0]}]}, 400, "the model's one input is 'input'"),
    ("iris", {"instances": [{"input": ROWS[0]}, ROWS[1]]}, 400, "the model's one input is"),
    ("iris", {"instances": [[], ROWS[0]]}, 400, "not all the same shape (the first is [0])"),
    ("iris", {"instances": [[ROWS[0]], [ROWS[1], ROWS[2]]]}, 400, "not all the same shape"),
    ("iris", {"instances": [[[0.5]] * 4] * 2}, 422, "must have shape [-1, 4]"),
    ("two", {"instances": [{"a": [1.0, 2.0]}]}, 422, "missing ['b']"),
    ("iris", {"instances": [[1, 2]]}, 422, "must have shape [-1, 4]"),
    ("two", {"instances": [[1.0, 2.0]]}, 400, "each instance must be an object"),
    ("two", {"instances": [{"a": [1, 2], "b": [1, 2]}, {"a": [1, 2]}]}, 400, "the same inputs"),
    ("two", {"inputs": [[1.0, 2.0]]}, 400, 'give "inputs" as an object'),
    ("iris", {"instances": [[0.5] * 4] * 300}, 413, "--max-tensor-elements"),
    ("echo-bytes", {"instances": [["x" * 65, "", ""]]}, 413, "--max-bytes-element"),
    ("nope", {"instances": ROWS}, 404, "'nope' is not registered"),
])
def test_bodies_v1_cannot_read_get_a_clear_error(http: httpx.Client, path: str, body: Any,
                                                 status: int, words: str) -> None:
    answer = http.post(f"/v1/models/{path}:predict", json=body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
    assert v1(http, "iris", {"instances": ROWS[:1]})[0]["label"] == 0


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    ("iris", b"{not json", 400, "the request body is not valid JSON"),
    ("iris", b"", 400, 'either "instances"'),
    ("iris", b'{"instances": %s}' % (b"[" * 70 + b"1" + b"]" * 70), 400, "more than 64 levels"),
    ("iris", b'{"instances": [[1, 2, 3, %s]]}' % (b"9" * 400), 400, "an integer of 400 digits"),
    ("nope", b"{not json", 404, "'nope' is not registered"),
])
def test_raw_bodies_v1_cannot_read_get_a_clear_error(http: httpx.Client, path: str, body: bytes,
                                                     status: int, words: str) -> None:
    answer = http.post(f"/v1/models/{path}:predict", content=body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]


def test_bad_bodies_count_as_bad_input_and_leave_the_model_healthy(http: httpx.Client) -> None:
    def bad_input() -> int:
        versions = http.get("/api/models/two/usage").json()["versions"]
        return int(sum(v["errors_by_kind"].get("bad_input", 0) for v in versions))

    before = bad_input()
    for body in (b"{not json", b'{"instances": [[1.0, 2.0]]}', b'{"inputs": {"c": [[1.0]]}}'):
        assert http.post("/v1/models/two:predict", content=body).status_code == 400
    assert bad_input() == before + 3
    health = http.get("/api/models/two/health").json()["versions"][0]
    assert health["status"] == "healthy", health


def test_v1_predictions_count_as_the_models_usage(http: httpx.Client) -> None:
    def requests() -> int:
        versions = http.get("/api/models/two/usage").json()["versions"]
        return int(sum(v["requests"] for v in versions))

    before = requests()
    for _ in range(4):
        v1(http, "two", {"inputs": {"a": [[1.0, 1.0]], "b": [[2.0, 2.0]]}})
    assert requests() == before + 4


def test_api_keys_and_roles_apply(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "var", "--demo")
    try:
        admin = server.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip()
        keys = {role: httpx.post(f"{server.url}/api/keys", json={"name": role, "role": role},
                                 headers={"x-api-key": admin}).json()["key"]
                for role in ("predict", "read")}
        url = f"{server.url}/v1/models/iris:predict"
        body = {"instances": ROWS}
        assert httpx.post(url, json=body).status_code == 401
        assert httpx.post(url, json=body, headers={"x-api-key": keys["read"]}).status_code == 403
        answer = httpx.post(url, json=body, headers={"authorization": f"Bearer {keys['predict']}"})
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 3
        assert httpx.get(f"{server.url}/v1/models/iris").status_code == 401
        assert httpx.get(f"{server.url}/v1/models/iris",
                         headers={"x-api-key": keys["read"]}).json()["ready"] is True
    finally:
        server.stop()
