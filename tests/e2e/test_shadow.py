"""Shadows, the prediction log with outcomes, and auto-rollback, through the real server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.onnx_models import failing_model, linear_model, offset_model, slow_model
from tests.support import ServerProcess, push

SWAP = np.eye(4)[[1, 0, 2, 3]]
"""Swaps the scores of classes 0 and 1: the argmax moves only when it was 0 or 1."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("shadow") / "var", "--shadow-queue", "16",
                           "--model-queue", "200",  # the bursts below are the shadow queue's test
                           "--guard-interval", "0.2", "--usage-flush-interval", "0.5")
    yield server
    server.stop()


def body(row: list[float], prediction_id: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                           "data": row}]}
    if prediction_id:
        request["id"] = prediction_id
    return request


def rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 4)).astype(np.float32)


def wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def shadow_pairs(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/models/{name}/shadow")
    assert response.status_code == 200
    return list(response.json()["pairs"])


def test_shadow_disagreement_and_accuracy_against_ground_truth(server: ServerProcess,
                                                               tmp_path: Path) -> None:
    x = rows(80, seed=1)
    truth = np.argmax(x, axis=1)  # the served version (identity scores) is always right
    with httpx.Client(base_url=server.url, timeout=30) as client:
        push(client, "judge", linear_model(tmp_path / "v1.onnx", np.eye(4)))
        push(client, "judge", linear_model(tmp_path / "v2.onnx", SWAP))
        client.put("/api/models/judge/aliases/production", json={"version": 1})
        settings = client.patch("/api/models/judge/settings", json={"prediction_log_rate": 1.0})
        assert settings.json()["prediction_log_rate"] == 1.0
        policy = {"routes": [{"version": 1, "weight": 100}],
                  "shadows": [{"version": 2, "sample_rate": 1.0}]}
        assert client.put("/api/models/judge/traffic", json=policy).status_code == 200
        for i, row in enumerate(x):
            answer = client.post("/v2/models/judge/infer", json=body(row.tolist(), f"p{i}"))
            assert answer.status_code == 200
            assert answer.json()["model_version"] == "1" and answer.json()["id"] == f"p{i}"
            np.testing.assert_allclose(answer.json()["outputs"][0]["data"], row, rtol=1e-6)
        pairs = wait_for(lambda: [p for p in shadow_pairs(client, "judge") if p["pairs"] == 80])
        assert pairs, shadow_pairs(client, "judge")
        outcomes = [{"id": f"p{i}", "value": int(label)} for i, label in enumerate(truth)]
        joined = client.post("/api/models/judge/outcomes",
                             json=[*outcomes, {"id": "never-served", "value": 0}]).json()
        scores = {(v["version"], v["role"]): v
                  for v in client.get("/api/models/judge/outcomes").json()["versions"]}
    agrees = np.isin(truth, [2, 3])
    pair = pairs[0]
    assert (pair["primary"], pair["shadow"], pair["shadow_errors"], pair["dropped"]) == (1, 2, 0, 0)
    assert pair["rows_compared"] == 80
    assert pair["agreement"] == pytest.approx(agrees.mean())
    diffs = np.abs(x - x @ SWAP)
    assert pair["mean_abs_diff"] == pytest.approx(diffs.mean(), rel=1e-4)
    assert pair["max_abs_diff"] == pytest.approx(diffs.max(), rel=1e-4)
    assert pair["primary_p50_ms"] > 0 and pair["shadow_p99_ms"] >= pair["shadow_p50_ms"]
    assert [d["pairs"] for d in pair["days"]] == [80]
    assert joined == {"model": "judge", "received": 81, "matched": 80, "unmatched": 1}
    assert scores[1, "primary"]["accuracy"] == 1.0
    assert scores[2, "shadow"]["accuracy"] == pytest.approx(agrees.mean())
    assert scores[2, "shadow"]["with_outcome"] == 80 and scores[2, "shadow"]["kind"] == "classification"


def test_offset_pair_through_the_cli(server: ServerProcess, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for offset in (1.0, 3.0):
            push(client, "drift", offset_model(tmp_path / f"v{offset}.onnx", offset))
        client.put("/api/models/drift/aliases/production", json={"version": 1})
    server.cli("traffic", "set", "drift", "1=100", "--shadow", "2@1.0")
    shown = server.cli("settings", "drift", "--log-rate", "1").stdout
    assert json.loads(shown)["prediction_log_rate"] == 1.0
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(10):
            client.post("/v2/models/drift/infer", json=body([1.0, 2.0, 3.0, 4.0 + i], f"d{i}"))
        compared = wait_for(lambda: [p for p in shadow_pairs(client, "drift") if p["pairs"] == 10])
        assert compared, shadow_pairs(client, "drift")
    table = server.cli("shadow", "drift").stdout
    assert "PRIMARY" in table and "100.00%" in table  # x + 1 and x + 3 share their argmax
    report = json.loads(server.cli("shadow", "drift", "--json").stdout)["pairs"][0]
    assert report["mean_abs_diff"] == pytest.approx(2.0) and report["max_abs_diff"] == pytest.approx(2.0)
    truth = json.dumps([{"id": f"d{i}", "value": 3} for i in range(10)])
    added = server.cli("outcomes", "add", "drift", truth).stdout
    assert "10 of 10 outcomes matched" in added
    scores = json.loads(server.cli("outcomes", "show", "drift", "--json").stdout)["versions"]
    assert {(s["version"], s["role"], s["accuracy"]) for s in scores} == {
        (1, "primary", 1.0), (2, "shadow", 1.0)}  # argmax of x + c is the last column


def test_a_full_shadow_queue_drops_without_harming_the_primary(server: ServerProcess,
                                                               tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        push(client, "busy", offset_model(tmp_path / "fast.onnx", 1.0))
        push(client, "busy", slow_model(tmp_path / "slow.onnx"))
        client.put("/api/models/busy/aliases/production", json={"version": 1})
        client.put("/api/models/busy/traffic", json={
            "routes": [{"version": 1, "weight": 100}], "shadows": [{"version": 2, "sample_rate": 1}]})
        # One request alone: its shadow copy finds an empty queue, so it is compared.
        assert client.post("/v2/models/busy/infer", json=body([0.0] * 4)).status_code == 200
        assert wait_for(lambda: [p for p in shadow_pairs(client, "busy") if p["pairs"] == 1])
    burst_size = 400  # the queue holds 16 and the shadow is slow: most copies must be dropped

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            return await asyncio.gather(*(client.post("/v2/models/busy/infer", json=body(
                [float(i), 0.0, 0.0, 0.0])) for i in range(burst_size)))

    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [200] * burst_size
    for i, answer in enumerate(answers):
        assert answer.json()["outputs"][0]["data"] == [i + 1.0, 1.0, 1.0, 1.0]
    sent = burst_size + 1
    with httpx.Client(base_url=server.url, timeout=30) as client:
        pair = wait_for(lambda: [p for p in shadow_pairs(client, "busy")
                                 if p["pairs"] + p["dropped"] + p["shadow_errors"] == sent])
        report = client.get("/api/models/busy/shadow").json()
        usage = client.get("/api/models/busy/usage").json()["versions"]
        metrics = client.get("/metrics").text
    assert pair, "every shadow copy is either compared, failed or dropped"
    assert pair[0]["dropped"] > 0 and pair[0]["pairs"] >= 1
    assert report["dropped_since_start"] == pair[0]["dropped"]
    served = next(v for v in usage if v["version"] == 1)
    assert served["requests"] == sent and served["errors"] == 0
    assert next(v for v in usage if v["version"] == 2)["requests"] == 0  # shadows are not served
    dropped = 'model_manager_shadow_requests_total{model="busy",outcome="dropped",version="2"}'
    assert f"{dropped} {float(pair[0]['dropped'])}" in metrics


def test_auto_rollback_takes_an_erroring_canary_out_of_traffic(server: ServerProcess,
                                                                tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        push(client, "guarded", offset_model(tmp_path / "good.onnx", 1.0))
        push(client, "guarded", failing_model(tmp_path / "bad.onnx"))
        client.put("/api/models/guarded/aliases/production", json={"version": 1})
        guard = {"max_error_rate": 0.05, "max_p99_ms": 250, "min_requests": 20}
        assert client.patch("/api/models/guarded/settings",
                            json={"auto_rollback": guard}).status_code == 200
        client.put("/api/models/guarded/traffic", json={
            "routes": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]})
        statuses = [client.post("/v2/models/guarded/infer", json=body([1.0] * 4),
                                headers={"X-Routing-Key": f"k{i}"}).status_code for i in range(60)]
        assert 500 in statuses and 200 in statuses  # the canary fails; production does not

        def canary_weight() -> bool | None:
            routes = client.get("/api/models/guarded/traffic").json()["policy"]["routes"]
            weight = {r["version"]: r["weight"] for r in routes}
            return (weight[1] == 100 and weight[2] == 0) or None

        assert wait_for(canary_weight, timeout=10), "the canary keeps its weight"
        after = [client.post("/v2/models/guarded/infer", json=body([1.0] * 4),
                             headers={"X-Routing-Key": f"k{i}"}) for i in range(40)]
        events = client.get("/api/models/guarded/events").json()
    assert {a.status_code for a in after} == {200}
    assert {a.json()["model_version"] for a in after} == {"1"}
    rollback = next(e for e in events if e["kind"] == "traffic.set" and e["actor"] == "auto-rollback")
    assert "error rate" in rollback["details"]["reason"]
    assert "auto_rollback" in server.log()


@pytest.mark.parametrize(("changes", "message"), [
    ({"prediction_log_rate": 2}, "between 0 and 1"),
    ({"auto_rollback": {"min_requests": 5}}, "max_error_rate or max_p99_ms"),
    ({"auto_rollback": {"max_error": 0.1}}, "auto_rollback is"),
    ({"sample": 1}, "unknown settings"),
])
def test_bad_settings_and_outcomes_are_400(server: ServerProcess, tmp_path: Path,
                                           changes: dict[str, Any], message: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        push(client, "strict", offset_model(tmp_path / "m.onnx", 0.0))
        response = client.patch("/api/models/strict/settings", json=changes)
        assert response.status_code == 400 and message in response.json()["error"]
        assert client.get("/api/models/strict/settings").json()["prediction_log_rate"] == 0.01
        bad = client.post("/api/models/strict/outcomes", json={"id": "x", "value": 1})
        assert bad.status_code == 400 and "JSON list" in bad.json()["error"]
        assert client.post("/api/models/nope/outcomes", json=[]).status_code == 404
        assert client.get("/api/models/nope/shadow").status_code == 404
