"""--preload loads before the server reports ready; --idle-unload frees what nobody uses."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import IrisFiles
from tests.e2e.test_model_cache import metric, states
from tests.onnx_models import slow_loading_model
from tests.support import ServerProcess, push


def test_preload_production_and_pinned_before_ready(tmp_path: Path, iris: IrisFiles) -> None:
    data = tmp_path / "var"
    first = ServerProcess(data)
    with httpx.Client(base_url=first.url, timeout=30) as client:
        for name in ("pre-a", "pre-b", "pre-c"):
            push(client, name, iris.onnx)
        push(client, "pre-a", iris.skops)
        client.put("/api/models/pre-a/aliases/production", json={"version": 2})
        client.put("/api/models/pre-b/aliases/production", json={"version": 1})
        client.put("/api/models/pre-c/versions/1/pin")
        for name in ("pre-slow", "pre-slower"):  # loaded one after the other: 2 s or more of 503
            push(client, name, slow_loading_model(tmp_path / "slow.onnx"))
            client.put(f"/api/models/{name}/aliases/production", json={"version": 1})
    first.stop()

    second = ServerProcess(data, "--preload", "production", wait_ready=False)
    try:
        seen = set()
        with httpx.Client(base_url=second.url, timeout=30) as client:
            while True:
                try:
                    ready = client.get("/v2/health/ready")
                except httpx.TransportError:
                    time.sleep(0.01)
                    continue
                assert client.get("/v2/health/live").status_code == 200
                seen.add((ready.status_code, ready.json().get("reason")))
                if ready.status_code == 200:
                    break
            loaded = states(client)
        assert (503, "preloading models") in seen
        assert loaded[("pre-slow", "1")] == loaded[("pre-slower", "1")] == "READY"
        assert loaded[("pre-a", "2")] == "READY"
        assert loaded[("pre-b", "1")] == "READY"
        assert loaded[("pre-c", "1")] == "READY"  # pinned versions always load at start
        assert loaded[("pre-a", "1")] == "UNAVAILABLE"
    finally:
        second.stop()


def test_idle_models_are_unloaded(tmp_path: Path, iris: IrisFiles) -> None:
    server = ServerProcess(tmp_path / "var", "--idle-unload", "1s")
    try:
        with httpx.Client(base_url=server.url) as client:
            push(client, "idle", iris.skops)
            body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4],
                                "data": [1, 2, 3, 4]}]}
            assert client.post("/v2/models/idle/infer", json=body).status_code == 200
            assert states(client)[("idle", "1")] == "READY"
            deadline = time.monotonic() + 15
            while states(client)[("idle", "1")] == "READY" and time.monotonic() < deadline:
                time.sleep(0.2)
            assert states(client)[("idle", "1")] == "UNAVAILABLE"
            assert metric(server, "model_manager_unloads_total", model="idle", reason="idle") == 1
            assert client.post("/v2/models/idle/infer", json=body).status_code == 200
    finally:
        server.stop()


def test_ls_shows_state_and_pins(server: ServerProcess, iris: IrisFiles) -> None:
    server.cli("push", str(iris.onnx), "--name", "listed")
    server.cli("push", str(iris.onnx), "--name", "listed")
    server.cli("pin", "listed", "2")
    rows = [line.split() for line in server.cli("ls", "listed").stdout.splitlines()[1:]]
    assert rows[0][0] == "1" and "UNAVAILABLE" in rows[0]
    assert rows[1][0] == "2" and "READY,PINNED" in rows[1]
    refused = server.cli("rm", "listed", "2", check=False)
    assert refused.returncode == 1 and "pinned" in refused.stderr
