"""Canary routing, sticky keys, promote and rollback through the real server."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.onnx_models import offset_model
from tests.support import ServerProcess, push

X = [1.0, 2.0, 3.0, 4.0]
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X}]}


@pytest.fixture(scope="module")
def canary(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Model 'canary': versions 1, 2, 3 answer x + 1, x + 2, x + 3; production is 1."""
    folder = tmp_path_factory.mktemp("canary")
    with httpx.Client(base_url=server.url) as client:
        for offset in (1, 2, 3):
            push(client, "canary", offset_model(folder / f"v{offset}.onnx", float(offset)))
        client.put("/api/models/canary/aliases/production", json={"version": 1})
    return "canary"


def served_version(answer: dict[str, object]) -> str:
    version = str(answer["model_version"])
    data = answer["outputs"][0]["data"]  # type: ignore[index]
    np.testing.assert_allclose(data, np.array(X) + float(version))  # whole, from that version
    return version


KEYS = 4000
"""Distinct routing keys: a fair 10% share is within 2 points with over 4 standard deviations."""


def test_keyed_split_is_within_two_points_and_sticky(server: ServerProcess, canary: str) -> None:
    with httpx.Client(base_url=server.url) as client:
        policy = {"routes": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}
        assert client.put("/api/models/canary/traffic", json=policy).status_code == 200
        assert client.get("/api/models/canary/traffic").json()["policy"]["routes"] == policy["routes"]

    async def route_all() -> Counter[str]:
        limits = httpx.Limits(max_connections=8)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            semaphore = asyncio.Semaphore(8)

            async def one(i: int) -> str:
                async with semaphore:
                    response = await client.post("/v2/models/canary/infer", json=BODY,
                                                  headers={"X-Routing-Key": f"user-{i}"})
                return served_version(response.json())

            return Counter(await asyncio.gather(*(one(i) for i in range(KEYS))))

    shares = asyncio.run(route_all())
    percent = {version: 100 * n / KEYS for version, n in shares.items()}
    assert abs(percent["1"] - 90) <= 2 and abs(percent["2"] - 10) <= 2
    with httpx.Client(base_url=server.url) as client:
        for key in ("alice", "bob"):
            seen = {client.post("/v2/models/canary/infer", json=BODY,
                                headers={"X-Routing-Key": key}).json()["model_version"]
                    for _ in range(10)}
            assert len(seen) == 1
        in_body = {**BODY, "parameters": {"routing_key": "alice"}}
        by_parameter = client.post("/v2/models/canary/infer", json=in_body).json()
        by_header = client.post("/v2/models/canary/infer", json=BODY,
                                headers={"X-Routing-Key": "alice"}).json()
        assert by_parameter["model_version"] == by_header["model_version"]
        pinned = client.post("/v2/models/canary/versions/3/infer", json=BODY).json()
        assert pinned["model_version"] == "3"  # an explicit version bypasses the policy
        assert len(pinned["id"]) == 32  # a prediction id is generated when none was sent
        assert client.delete("/api/models/canary/traffic").status_code == 204
        assert client.post("/v2/models/canary/infer", json=BODY).json()["model_version"] == "1"
        kinds = [e["kind"] for e in client.get("/api/models/canary/events").json()]
        assert kinds[:2] == ["traffic.cleared", "traffic.set"]


@pytest.mark.parametrize(("policy", "status", "message"), [
    ({"routes": [{"version": 1, "weight": 50}, {"version": 9, "weight": 50}]}, 409, "version 9"),
    ({"routes": [{"version": 1, "weight": 50}, {"version": 2, "weight": 40}]}, 400, "summing to 100"),
    ({"routes": [{"version": 1, "weight": 100}], "shadows": [{"version": 1}]}, 400, "appears once"),
])
def test_bad_policies_are_refused(server: ServerProcess, canary: str, policy: dict[str, object],
                                  status: int, message: str) -> None:
    response = httpx.put(f"{server.url}/api/models/canary/traffic", json=policy)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert httpx.get(f"{server.url}/api/models/canary/traffic").json()["policy"] is None


def test_promote_and_rollback_under_load_fail_no_request(server: ServerProcess,
                                                        canary: str) -> None:
    stop = threading.Event()

    def client_loop() -> list[tuple[int, str]]:
        seen = []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while not stop.is_set():
                response = client.post("/v2/models/canary/infer", json=BODY)
                seen.append((response.status_code,
                             served_version(response.json()) if response.status_code == 200 else ""))
        return seen

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client_loop) for _ in range(8)]
        with httpx.Client(base_url=server.url, timeout=60) as admin:
            admin.put("/api/models/canary/traffic",
                      json={"routes": [{"version": 1, "weight": 80}, {"version": 3, "weight": 20}]})
            assert admin.post("/api/models/canary/promote", json={"version": 3}).json()["version"] == 3
            assert admin.get("/api/models/canary/traffic").json()["policy"] is None  # canary ended
            for _ in range(3):
                assert server.cli("rollback", "canary").stdout.strip() == "canary@production -> 1"
                assert "canary@production -> 3" in server.cli("promote", "canary", "3").stdout
        stop.set()
        results = [r for f in futures for r in f.result()]
    assert len(results) > 50
    assert {status for status, _ in results} == {200}
    assert {"1", "3"} <= {version for _, version in results}


def test_traffic_cli(server: ServerProcess, canary: str) -> None:
    shown = server.cli("traffic", "set", "canary", "1=70", "2=30", "--shadow", "3@0.5")
    assert '"sample_rate": 0.5' in shown.stdout
    assert '"weight": 70' in server.cli("traffic", "show", "canary").stdout
    assert "follow production" in server.cli("traffic", "clear", "canary").stdout
    bad = server.cli("traffic", "set", "canary", "1:70", check=False)
    assert bad.returncode == 2 and "VERSION=WEIGHT" in bad.stderr
    assert server.cli("traffic", "show", "canary").stdout.strip() == "null"


def test_rollback_without_history_is_409(server: ServerProcess, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url) as client:
        push(client, "no-history", offset_model(tmp_path / "m.onnx", 0.0))
        response = client.post("/api/models/no-history/rollback")
    assert response.status_code == 409 and "roll back" in response.json()["error"]
