"""The memory-budgeted cache through the real server, with real ONNX models."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.onnx_models import offset_model, slow_loading_model, weights_model
from tests.support import ServerProcess, push

MB = 1_000_000


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    text = httpx.get(f"{server.url}/metrics").text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def server_rss(server: ServerProcess) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def states(client: httpx.Client) -> dict[tuple[str, str], str]:
    return {(e["name"], e["version"]): e["state"]
            for e in client.post("/v2/repository/index").json()}


def lookup(client: httpx.Client, name: str, version: str | None = None) -> httpx.Response:
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {"inputs": [{"name": "idx", "datatype": "INT64", "shape": [1], "data": [0]}]}
    return client.post(path, json=body)


@pytest.fixture(scope="module")
def budget_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("budget") / "var", "--memory-budget", "100MB",
                           "--load-wait", "1s")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def table_models(budget_server: ServerProcess,
                 tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Six ~20 MB models under a 100 MB budget: at most four fit at once."""
    folder = tmp_path_factory.mktemp("tables")
    names = [f"table-{i}" for i in range(6)]
    with httpx.Client(base_url=budget_server.url, timeout=60) as client:
        for i, name in enumerate(names):
            assert push(client, name, weights_model(folder / f"{name}.onnx", 20, seed=i)).status_code == 201
    return names


def test_loaded_models_stay_within_the_budget(budget_server: ServerProcess,
                                              table_models: list[str]) -> None:
    evictions_before = metric(budget_server, "model_manager_evictions_total")
    with httpx.Client(base_url=budget_server.url, timeout=60) as client:
        for name in table_models * 2:
            assert lookup(client, name).status_code == 200
            assert metric(budget_server, "model_manager_loaded_bytes") <= 100 * MB
        ready = [key for key, state in states(client).items() if state == "READY"]
        assert 1 <= len(ready) <= 4
        detail = client.get(f"/api/models/{table_models[-1]}").json()["versions"][0]
    assert detail["state"] == "READY"
    assert 15 * MB < detail["loaded_bytes"] < 30 * MB
    assert metric(budget_server, "model_manager_memory_budget_bytes") == 100 * MB
    assert metric(budget_server, "model_manager_evictions_total") - evictions_before >= 6


def test_a_model_larger_than_the_budget_is_503(budget_server: ServerProcess,
                                               table_models: list[str], tmp_path: Path) -> None:
    with httpx.Client(base_url=budget_server.url, timeout=60) as client:
        push(client, "too-large", weights_model(tmp_path / "large.onnx", 110))
        response = lookup(client, "too-large")
        others = lookup(client, table_models[0])
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    error = response.json()["error"]
    assert "more than the whole memory budget of 95.4 MiB" in error
    assert "needs 12" in error and "MiB (estimated" in error  # 110 MB with headroom, in MiB
    assert others.status_code == 200


def test_pinned_version_survives_pressure(budget_server: ServerProcess,
                                          table_models: list[str]) -> None:
    pinned = budget_server.cli("pin", table_models[0], "1")
    assert f"pinned {table_models[0]} version 1" in pinned.stdout
    with httpx.Client(base_url=budget_server.url, timeout=60) as client:
        for name in table_models[1:] * 2:
            assert lookup(client, name).status_code == 200
        assert states(client)[(table_models[0], "1")] == "READY"
        shown = client.get(f"/api/models/{table_models[0]}/versions/1").json()
        assert shown["pinned"] is True
        refused = client.post(f"/v2/repository/models/{table_models[0]}/unload")
        assert refused.status_code == 409
        budget_server.cli("unpin", table_models[0], "1")
        for name in table_models[1:] * 2:
            assert lookup(client, name).status_code == 200
        assert states(client)[(table_models[0], "1")] == "UNAVAILABLE"


def test_hundred_concurrent_first_requests_load_once(budget_server: ServerProcess,
                                                     tmp_path: Path) -> None:
    with httpx.Client(base_url=budget_server.url, timeout=60) as client:
        push(client, "single-flight", weights_model(tmp_path / "sf.onnx", 5))

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=budget_server.url, timeout=60,
                                     limits=httpx.Limits(max_connections=100)) as client:
            body = {"inputs": [{"name": "idx", "datatype": "INT64", "shape": [1], "data": [3]}]}
            responses = await asyncio.gather(*(
                client.post("/v2/models/single-flight/infer", json=body) for _ in range(100)))
        return [r.status_code for r in responses]

    assert asyncio.run(burst()) == [200] * 100
    assert metric(budget_server, "model_manager_loads_total", model="single-flight") == 1


def test_corrupt_artifact_fails_with_backoff_and_spares_others(budget_server: ServerProcess,
                                                               table_models: list[str],
                                                               tmp_path: Path) -> None:
    with httpx.Client(base_url=budget_server.url, timeout=60) as client:
        version = push(client, "rotten", weights_model(tmp_path / "rotten.onnx", 1, seed=99)).json()
        blob = next((budget_server.data_dir / "store" / "sha256").rglob(version["sha256"]))
        blob.write_bytes(b"\x08" + bytes(4096))  # the disk rotted after the upload
        answers = [lookup(client, "rotten") for _ in range(5)]
        index = {(e["name"], e["version"]): e for e in client.post("/v2/repository/index").json()}
        ready = client.get("/v2/models/rotten/ready")
        healthy = lookup(client, table_models[1])
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert {a.status_code for a in answers} == {503}
    assert "not a loadable ONNX model" in answers[0].json()["error"]
    # Retries wait 1, 2, 4, 8 s: five requests would need 15 s to be five attempts.
    refused = [a for a in answers if "next attempt in" in a.json()["error"]]
    attempts = metric(budget_server, "model_manager_load_failures_total", model="rotten")
    assert refused and attempts == len(answers) - len(refused)
    assert index[("rotten", "1")]["state"] == "FAILED"
    assert "not a loadable ONNX model" in index[("rotten", "1")]["reason"]
    assert healthy.status_code == 200


def test_requests_to_loaded_models_flow_while_another_loads(budget_server: ServerProcess,
                                                            table_models: list[str],
                                                            tmp_path: Path) -> None:
    with httpx.Client(base_url=budget_server.url, timeout=60) as client:
        push(client, "slow-loader", slow_loading_model(tmp_path / "slow.onnx"))
        assert lookup(client, table_models[2]).status_code == 200
    done = threading.Event()
    served_during_load: list[int] = []

    def load_slow_model() -> None:
        with httpx.Client(base_url=budget_server.url, timeout=60) as client:
            body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}]}
            assert client.post("/v2/models/slow-loader/infer", json=body).status_code == 200
        done.set()

    def is_loading(client: httpx.Client) -> bool:
        return any(e["name"] == "slow-loader" and e["state"] == "LOADING"
                   for e in client.post("/v2/repository/index", json={}).json())

    loader = threading.Thread(target=load_slow_model)
    loader.start()
    with httpx.Client(base_url=budget_server.url, timeout=60) as client:
        while not done.is_set():
            # An answer followed by the other model still loading came back during its load.
            if lookup(client, table_models[2]).status_code == 200 and is_loading(client):
                served_during_load.append(1)
    loader.join()
    assert served_during_load


def test_alias_switch_under_load_fails_no_request(budget_server: ServerProcess,
                                                  tmp_path: Path) -> None:
    with httpx.Client(base_url=budget_server.url, timeout=60) as client:
        push(client, "switch", offset_model(tmp_path / "one.onnx", 1.0))
        push(client, "switch", offset_model(tmp_path / "two.onnx", 2.0))
        client.put("/api/models/switch/aliases/production", json={"version": 1})
    stop = threading.Event()
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x.ravel().tolist()}]}

    def client_loop() -> list[tuple[int, str, list[float]]]:
        seen = []
        with httpx.Client(base_url=budget_server.url, timeout=60) as client:
            while not stop.is_set():
                response = client.post("/v2/models/switch/infer", json=body)
                answer = response.json()
                seen.append((response.status_code, answer.get("model_version", ""),
                             answer.get("outputs", [{}])[0].get("data", [])))
        return seen

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(client_loop) for _ in range(16)]
        with httpx.Client(base_url=budget_server.url, timeout=60) as admin:
            for flip in range(20):
                moved = admin.put("/api/models/switch/aliases/production",
                                  json={"version": 2 if flip % 2 == 0 else 1})
                assert moved.status_code == 200
                time.sleep(0.05)
        stop.set()
        results = [r for f in futures for r in f.result()]
    assert len(results) > 100
    assert {status for status, _, _ in results} == {200}
    for _, served, data in results:  # each answer comes whole from the version that claims it
        np.testing.assert_allclose(data, (x + float(served)).ravel())
    assert {served for _, served, _ in results} == {"1", "2"}
