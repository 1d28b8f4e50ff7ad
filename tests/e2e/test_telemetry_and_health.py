"""Usage, output validity and health through the real server."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import IrisFiles
from tests.e2e.test_model_cache import metric
from tests.onnx_models import matmul_chain_model, sqrt_model
from tests.support import ServerProcess, push

IRIS_ROW = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                        "data": [5.1, 3.5, 1.4, 0.2]}]}


def x_body(values: list[float]) -> dict[str, object]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": values}]}


def wide_body(rows: int) -> dict[str, object]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 1024],
                        "data": [0.5] * (rows * 1024)}], "outputs": [{"name": "y"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("health") / "var", "--health-max-p99", "50ms",
                           "--predict-timeout", "2s", "--usage-flush-interval", "0.5s")
    yield server
    server.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def version_health(client: httpx.Client, name: str, version: int = 1) -> dict[str, object]:
    report = client.get(f"/api/models/{name}/health").json()
    return next(v for v in report["versions"] if v["version"] == version)


def test_nan_output_is_rejected_and_makes_the_model_unhealthy(client: httpx.Client,
                                                              tmp_path: Path) -> None:
    push(client, "rooted", sqrt_model(tmp_path / "sqrt.onnx"))
    assert client.post("/v2/models/rooted/infer", json=x_body([1, 4, 9, 16])).status_code == 200
    for _ in range(3):
        rejected = client.post("/v2/models/rooted/infer", json=x_body([-1, 4, 9, 16]))
        assert rejected.status_code == 500
        assert "output 'y' holds 1 NaN or infinite value(s) of 4" in rejected.json()["error"]
    health = version_health(client, "rooted")
    assert health["status"] == "unhealthy"
    assert any("invalid outputs in 75% of 4 requests" in r and "NaN" in r
               for r in health["reasons"])  # type: ignore[union-attr]


def test_constraint_violations_are_flagged_and_served(client: httpx.Client, iris: IrisFiles) -> None:
    rules = {"validation": {"outputs": {"label": {"allowed": [0, 1]},
                                        "probabilities": {"range": [0, 1], "sums_to_one": True}}}}
    push(client, "strict-iris", iris.onnx, metadata=json.dumps(rules))
    virginica = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                             "data": [6.7, 3.0, 5.2, 2.3]}]}
    served = client.post("/v2/models/strict-iris/infer", json=virginica)
    assert served.status_code == 200  # flagged, not rejected: constraints default to "flag"
    assert client.post("/v2/models/strict-iris/infer", json=IRIS_ROW).status_code == 200
    usage = client.get("/api/models/strict-iris/usage").json()["versions"][0]
    assert usage["errors_by_kind"]["invalid_output"] == 1
    health = version_health(client, "strict-iris")
    assert any("labels ['2'] are not among the allowed" in r
               for r in health["reasons"])  # type: ignore[union-attr]


def test_malformed_validation_metadata_is_refused_at_upload(client: httpx.Client,
                                                            iris: IrisFiles) -> None:
    bad = {"validation": {"policy": {"nan": "ignore"}}}
    response = push(client, "badly-ruled", iris.onnx, metadata=json.dumps(bad))
    assert response.status_code == 400
    assert "reject|flag" in response.json()["error"]


def test_slow_model_turns_degraded_while_others_stay_healthy(client: httpx.Client, tmp_path: Path,
                                                             iris: IrisFiles) -> None:
    push(client, "slowpoke", matmul_chain_model(tmp_path / "slow.onnx", layers=64))
    # Its own threshold far above what a busy machine adds: the test is about the slow one.
    push(client, "quick", iris.onnx, metadata=json.dumps({"health": {"max_p99_ms": 5000}}))
    for name in ("slowpoke", "quick"):  # so that a cold start's load is not what p99 shows
        assert client.post(f"/v2/repository/models/{name}/load").status_code == 200
    for _ in range(5):
        assert client.post("/v2/models/slowpoke/infer", json=wide_body(128)).status_code == 200
        assert client.post("/v2/models/quick/infer", json=IRIS_ROW).status_code == 200
    slow, quick = version_health(client, "slowpoke"), version_health(client, "quick")
    assert slow["status"] == "degraded"
    assert any("p99 latency" in r and "threshold 50 ms" in r for r in slow["reasons"])  # type: ignore[union-attr]
    assert quick["status"] == "healthy" and quick["reasons"] == [], quick


def test_failing_probe_blocks_promotion_unless_forced(server: ServerProcess, client: httpx.Client,
                                                      iris: IrisFiles) -> None:
    good = {"probe": {"inputs": IRIS_ROW["inputs"], "expected": {"label": [0]}}}
    wrong = {"probe": {"inputs": IRIS_ROW["inputs"], "expected": {"label": [2]}}}
    push(client, "probed", iris.onnx, metadata=json.dumps(good))
    push(client, "probed", iris.onnx, metadata=json.dumps(wrong))
    assert client.put("/api/models/probed/aliases/production", json={"version": 1}).status_code == 200
    refused = client.put("/api/models/probed/aliases/production", json={"version": 2})
    assert refused.status_code == 409
    assert "fails its golden probe" in refused.json()["error"]
    assert client.get("/api/models/probed").json()["aliases"] == {"production": 1}
    assert client.put("/api/models/probed/aliases/staging", json={"version": 2}).status_code == 200
    health = version_health(client, "probed", 2)
    assert health["status"] == "unhealthy"
    assert health["last_probe"]["passed"] is False  # type: ignore[index]
    assert any("golden probe failed" in r and "expected" in r
               for r in health["reasons"])  # type: ignore[union-attr]
    assert version_health(client, "probed", 1)["last_probe"]["passed"] is True  # type: ignore[index]
    forced = server.cli("alias", "set", "probed", "production", "2", "--force")
    assert "probed@production -> 2" in forced.stdout


def test_metrics_parse_and_carry_the_named_series(server: ServerProcess, client: httpx.Client,
                                                  iris: IrisFiles) -> None:
    push(client, "metered", iris.onnx)
    client.post("/v2/models/metered/infer", json=IRIS_ROW)
    client.post("/v2/models/metered/infer", json={"inputs": [{"name": "input", "datatype": "FP64",
                                                              "shape": [1, 4], "data": [1] * 4}]})
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    for name in ("model_manager_requests", "model_manager_request_seconds",
                 "model_manager_inference_seconds", "model_manager_loads",
                 "model_manager_evictions", "model_manager_loaded_bytes",
                 "model_manager_memory_budget_bytes"):
        assert name in families, name
    assert metric(server, "model_manager_requests_total", model="metered", version="1",
                  outcome="ok") == 1
    assert metric(server, "model_manager_requests_total", model="metered", version="1",
                  outcome="bad_input") == 1
    assert metric(server, "model_manager_request_seconds_count", model="metered") == 2


def test_lifecycle_events_are_json_lines(server: ServerProcess, client: httpx.Client,
                                         iris: IrisFiles) -> None:
    push(client, "evented", iris.onnx)
    client.post("/v2/models/evented/infer", json=IRIS_ROW)
    client.put("/api/models/evented/aliases/production", json={"version": 1})
    client.post("/v2/repository/models/evented/unload")
    events = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    mine = [e["event"] for e in events if e.get("model") == "evented"]
    assert mine == ["upload", "load", "alias_change", "unload"]
    assert all("ts" in e for e in events)


def test_cli_usage_and_health(server: ServerProcess, client: httpx.Client, iris: IrisFiles) -> None:
    push(client, "reported", iris.onnx)
    assert "never" in server.cli("usage", "reported").stdout.splitlines()[1]
    assert client.post("/v2/repository/models/reported/load").status_code == 200
    for _ in range(3):
        client.post("/v2/models/reported/infer", json=IRIS_ROW)
    row = server.cli("usage", "reported").stdout.splitlines()[1].split()
    assert row[:3] == ["1", "3", "0"] and "never" not in row
    health = server.cli("health", "reported").stdout.splitlines()
    assert health[1].split()[:3] == ["reported", "1", "HEALTHY"]


# Last of the module's tests on the shared server: the timed-out predictions keep its CPU busy
# for a while after the callers got their 504, which would skew the latency of later tests.
def test_a_hung_model_times_out_without_blocking_others(server: ServerProcess, client: httpx.Client,
                                                       tmp_path: Path, iris: IrisFiles) -> None:
    push(client, "stuck", matmul_chain_model(tmp_path / "stuck.onnx", layers=64))
    push(client, "bystander", iris.onnx)
    assert client.post("/v2/models/bystander/infer", json=IRIS_ROW).status_code == 200
    statuses: list[int] = []
    body = json.dumps(wide_body(1200)).encode()  # built before the hang starts, not during it

    def call_stuck() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as own:
            statuses.append(own.post("/v2/models/stuck/infer", content=body,
                                     headers={"content-type": "application/json"}).status_code)

    def stuck_in_flight() -> int:
        loaded = client.get("/api/cache").json()["loaded"]
        return sum(e["in_flight"] for e in loaded if e["model"] == "stuck")

    callers = [threading.Thread(target=call_stuck) for _ in range(6)]
    for caller in callers:
        caller.start()
    deadline = time.monotonic() + 30
    while stuck_in_flight() == 0:  # wait until the hang is in progress
        assert time.monotonic() < deadline and not statuses, "the stuck model was never running"
        time.sleep(0.02)
    served_during_the_hang = 0
    while True:  # answers that come back while the stuck requests still run
        assert client.get("/v2/health/ready").status_code == 200
        assert client.post("/v2/models/bystander/infer", json=IRIS_ROW).status_code == 200
        if stuck_in_flight() == 0 or statuses:
            break
        served_during_the_hang += 1
    for caller in callers:
        caller.join()
    assert served_during_the_hang > 0
    assert 504 in statuses
    timeouts = client.get("/api/models/stuck/usage").json()["versions"][0]["errors_by_kind"]
    assert timeouts["timeout"] == statuses.count(504)


def test_usage_survives_restart_and_kill(tmp_path: Path, iris: IrisFiles) -> None:
    data = tmp_path / "var"
    first = ServerProcess(data, "--usage-flush-interval", "60s")  # only the shutdown flushes
    with httpx.Client(base_url=first.url) as client:
        push(client, "durable", iris.onnx)
        for _ in range(4):
            client.post("/v2/models/durable/infer", json=IRIS_ROW)
        client.post("/v2/models/durable/infer", json={"inputs": []})  # bad input, counted
    first.stop()  # SIGTERM: a graceful shutdown flushes what is pending

    second = ServerProcess(data, "--usage-flush-interval", "0.5s")
    with httpx.Client(base_url=second.url) as client:
        usage = client.get("/api/models/durable/usage").json()["versions"][0]
        assert (usage["requests"], usage["errors_by_kind"]["bad_input"]) == (5, 1)
        last_used = usage["last_used"]
        assert last_used is not None and usage["days"][0]["requests"] == 5
        for _ in range(3):
            client.post("/v2/models/durable/infer", json=IRIS_ROW)
        deadline = time.monotonic() + 30
        while client.get("/api/status").json()["writes_pending"]["usage"]:  # until flushed
            assert time.monotonic() < deadline, "the counts were never flushed"
            time.sleep(0.05)
    second.stop(signal.SIGKILL)

    third = ServerProcess(data)
    try:
        with httpx.Client(base_url=third.url) as client:
            usage = client.get("/api/models/durable/usage").json()["versions"][0]
        assert usage["requests"] == 8
        assert usage["last_used"] >= last_used
    finally:
        third.stop()
