"""Outages of what the server depends on: PostgreSQL stopped under traffic, the store's folder gone.

Loaded models keep answering; management calls and cold models get 503 with Retry-After; nothing
counted meanwhile is lost or written twice once the registry is back.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.onnx_models import offset_model
from tests.postgres import PostgresServer, postgres_server
from tests.support import ServerProcess, eventually, push

OUTAGE = 20.0
X = [1.0, 2.0, 3.0, 4.0]


@pytest.fixture(scope="module")
def database() -> Iterator[PostgresServer]:
    yield from postgres_server()  # a server of its own: this module stops and starts it


def infer(client: httpx.Client, name: str, request_id: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                        "data": X}]}
    if request_id is not None:
        body["id"] = request_id
    return client.post(f"/v2/models/{name}/infer", json=body)


def assert_unavailable(response: httpx.Response, says: str) -> None:
    assert response.status_code == 503, response.text
    assert says in response.json()["error"]
    assert int(response.headers["retry-after"]) >= 1


class Traffic:
    """One thread per model sending requests one after another until stopped."""

    def __init__(self, url: str, models: list[str]) -> None:
        self.statuses: dict[str, list[int]] = {m: [] for m in models}
        self.ids: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(url, m)) for m in models]
        for thread in self._threads:
            thread.start()

    def _send(self, url: str, model: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not self._stop.is_set():
                request_id = f"{model}-{len(self.statuses[model])}"
                self.statuses[model].append(infer(client, model, request_id).status_code)
                if model == "one":
                    self.ids.append(request_id)
                time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def kinds_of_events(client: httpx.Client, model: str) -> list[str]:
    return [e["kind"] for e in reversed(client.get(f"/api/models/{model}/events").json())]


def test_loaded_models_serve_through_a_database_outage_and_nothing_is_lost(
        database: PostgresServer, tmp_path: Path) -> None:
    url = database.new_database()
    server = ServerProcess(tmp_path / "a", "--db-url", url, "--usage-flush-interval", "0.5",
                           "--shadow-queue", "4096")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for name, offset in (("one", 1.0), ("two", 2.0), ("cold", 3.0), ("one", 10.0)):
                push(client, name, offset_model(tmp_path / f"{name}-{offset}.onnx", offset))
            client.put("/api/models/one/aliases/production", json={"version": 1})
            assert client.put("/api/models/one/traffic", json={
                "routes": [{"version": 1, "weight": 100}],
                "shadows": [{"version": 2, "sample_rate": 1.0}]}).status_code == 200
            client.patch("/api/models/one/settings", json={"prediction_log_rate": 1.0})
            assert infer(client, "one").status_code == infer(client, "two").status_code == 200
            events_of_one = kinds_of_events(client, "one")

            database.pause()
            traffic = Traffic(server.url, ["one", "two"])
            started = time.monotonic()
            # The outage may be noticed (a route read, a heartbeat) before the traffic's first
            # answers are counted: what must follow is usage kept in memory, not written.
            eventually(lambda: outage_holds_usage(client.get("/api/status").json()), 10,
                       "the server notices the outage and keeps the usage it counts")
            assert client.get("/api/status").json()["registry"]["since"] is not None
            assert "model_manager_registry_up 0.0" in client.get("/metrics").text
            assert_unavailable(client.put("/api/models/two/aliases/production",
                                          json={"version": 1}), "the registry is unreachable")
            assert_unavailable(client.get("/api/models"), "the registry is unreachable")
            assert_unavailable(infer(client, "cold"), "the registry is unreachable")
            assert client.get("/v2/health/ready").status_code == 200  # it still serves what it has
            assert client.get("/v2/models/one").status_code == 200  # metadata from the known routes
            time.sleep(max(OUTAGE - (time.monotonic() - started), 0))
            traffic.stop()

            database.start()
            eventually(lambda: client.get("/api/status").json()["registry"]["state"] == "ok", 30,
                       "the server sees the registry back")
            eventually(lambda: not any(client.get("/api/status").json()["writes_pending"].values()),
                       30, "the writes kept in memory are written")
            eventually(lambda: infer(client, "cold").status_code == 200, 15,
                       "the model first asked for during the outage serves")
            assert client.put("/api/models/two/aliases/production",
                              json={"version": 1}).status_code == 200
            outcomes = [{"id": i, "value": 0} for i in traffic.ids]
            joined = client.post("/api/models/one/outcomes", json=outcomes).json()

        answered = {m: len(s) + 1 for m, s in traffic.statuses.items()}  # +1: the warm-up
        assert {m: collections.Counter(s) for m, s in traffic.statuses.items()} == {
            m: {200: n - 1} for m, n in answered.items()}
        assert answered["one"] > 100 and answered["two"] > 100
        assert joined["matched"] == len(traffic.ids)  # predictions logged during the outage

        reader = ServerProcess(tmp_path / "b", "--db-url", url)  # what the registry holds
        try:
            with httpx.Client(base_url=reader.url, timeout=30) as client:
                usage = {m: sum(v["requests"] for v in client.get(f"/api/models/{m}/usage")
                                .json()["versions"]) for m in ("one", "two")}
                pair = client.get("/api/models/one/shadow").json()["pairs"][0]
                scores = {(v["version"], v["role"]): v for v in
                          client.get("/api/models/one/outcomes").json()["versions"]}
                assert kinds_of_events(client, "one") == events_of_one  # no gap, no duplicate
                assert kinds_of_events(client, "two") == ["version.created", "alias.set"]
        finally:
            reader.stop()
        assert usage == answered  # every answered request counted exactly once
        assert pair["pairs"] + pair["shadow_errors"] + pair["dropped"] == answered["one"]
        assert pair["pairs"] > 100
        assert scores[1, "primary"]["logged"] == answered["one"]
        assert scores[1, "primary"]["with_outcome"] == len(traffic.ids)
    finally:
        server.stop()
    log = server.log()
    assert log.count("the registry is unreachable") >= 1 and "Traceback" not in log


def outage_holds_usage(status: dict[str, Any]) -> bool:
    return bool(status["registry"]["state"] == "unreachable"
                and status["writes_pending"]["usage"] > 0)


def route_reads(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('model_manager_route_reads_total{outcome="ok"}'):
            return float(line.split()[-1])
    return 0.0


async def infer_at_once(url: str, name: str, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X}]}
        answers = await asyncio.gather(*(client.post(f"/v2/models/{name}/infer", json=body)
                                         for _ in range(n)))
    return [a.status_code for a in answers]


def test_a_cold_model_waits_for_the_store_while_loaded_ones_serve(tmp_path: Path) -> None:
    store = tmp_path / "store"
    server = ServerProcess(tmp_path / "var", "--store-url", str(store))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            push(client, "warm", offset_model(tmp_path / "warm.onnx", 1.0))
            push(client, "cold", offset_model(tmp_path / "cold.onnx", 2.0))
            assert infer(client, "warm").status_code == 200

            before = route_reads(client)
            time.sleep(2.2)  # past the routes' 2 s ttl: the next request finds them old
            assert asyncio.run(infer_at_once(server.url, "warm", 64)) == [200] * 64
            eventually(lambda: route_reads(client) > before, 5, "the routes are read again")
            time.sleep(0.5)
            assert route_reads(client) == before + 1  # one read for 64 requests, none waited

            store.rename(tmp_path / "unmounted")
            assert infer(client, "warm").status_code == 200
            assert_unavailable(infer(client, "cold"), "the artifact store")
            assert_unavailable(infer(client, "cold"), "the artifact store")  # backing off
            health = client.get("/api/models/cold/health").json()
            assert health["status"] not in ("unhealthy", "degraded"), health
            assert client.get("/v2/models/cold/ready").json()["ready"] is True
            index = {m["name"]: m for m in client.post("/v2/repository/index", json={}).json()}
            assert index["cold"]["state"] == "UNAVAILABLE"

            (tmp_path / "unmounted").rename(store)
            eventually(lambda: infer(client, "cold").status_code == 200, 15,
                       "the cold model loads once the store is back")
            assert infer(client, "warm").status_code == 200
            kinds = client.get("/api/models/cold/usage").json()["versions"][0]["errors_by_kind"]
            assert kinds["unavailable"] >= 2 and kinds["runtime_error"] == 0
    finally:
        server.stop()
