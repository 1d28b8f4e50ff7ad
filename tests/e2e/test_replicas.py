"""Two servers sharing one PostgreSQL registry and one artifact store."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from tests.onnx_models import offset_model
from tests.postgres import PostgresServer
from tests.support import ServerProcess, push

X = [1.0, 2.0, 3.0, 4.0]
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X}]}


def served_offset(url: str, version: str | None = None) -> float:
    path = "/v2/models/shared/infer" if version is None else f"/v2/models/shared/versions/{version}/infer"
    answer = httpx.post(f"{url}{path}", json=BODY, timeout=30)
    assert answer.status_code == 200, answer.text
    return float(answer.json()["outputs"][0]["data"][0] - X[0])


def eventually(check: object, timeout: float = 10.0) -> float:
    """Seconds until ``check()`` holds (fails past ``timeout``)."""
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - started < timeout, "the other replica never caught up"
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_change_through_one_replica_is_served_by_the_other(postgres: PostgresServer,
                                                             tmp_path: Path) -> None:
    url, store = postgres.new_database(), str(tmp_path / "store")
    first = ServerProcess(tmp_path / "a", "--db-url", url, "--store-url", store)
    second = ServerProcess(tmp_path / "b", "--db-url", url, "--store-url", store)
    try:
        with httpx.Client(base_url=first.url, timeout=60) as admin:
            for offset in (1.0, 2.0):
                push(admin, "shared", offset_model(tmp_path / f"v{offset}.onnx", offset))
            admin.put("/api/models/shared/aliases/production", json={"version": 1})
            eventually(lambda: served_offset(second.url) == 1.0)
            statuses: list[int] = []
            stop = threading.Event()

            def keep_asking() -> None:
                with httpx.Client(base_url=second.url, timeout=30) as client:
                    while not stop.is_set():
                        statuses.append(client.post("/v2/models/shared/infer", json=BODY).status_code)

            asker = threading.Thread(target=keep_asking)
            asker.start()
            admin.put("/api/models/shared/aliases/production", json={"version": 2})
            eventually(lambda: served_offset(second.url) == 2.0)
            push(admin, "shared", offset_model(tmp_path / "v3.onnx", 3.0))
            eventually(lambda: httpx.post(f"{second.url}/v2/models/shared/versions/3/infer",
                                          json=BODY).status_code == 200)
            admin.put("/api/models/shared/traffic", json={"routes": [{"version": 3, "weight": 100}]})
            eventually(lambda: served_offset(second.url) == 3.0)
            stop.set()
            asker.join()
        assert second.stop() == 0  # flushes its counts into the shared registry
        usage = httpx.get(f"{first.url}/api/models/shared/usage").json()["versions"]
    finally:
        first.stop()
        second.stop()
    assert statuses and set(statuses) == {200}  # no failed request while the replicas switched
    assert sum(v["requests"] for v in usage) >= len(statuses)  # the replicas' counts add up


def test_replicas_know_each_other_and_a_killed_one_drops_out(postgres: PostgresServer,
                                                             tmp_path: Path) -> None:
    url, store = postgres.new_database(), str(tmp_path / "store")
    first = ServerProcess(tmp_path / "a", "--db-url", url, "--store-url", store,
                          "--memory-budget", "512MiB")
    second = ServerProcess(tmp_path / "b", "--db-url", url, "--store-url", store)
    try:
        with httpx.Client(base_url=first.url, timeout=60) as admin:
            push(admin, "shared", offset_model(tmp_path / "v1.onnx", 1.0))
            assert served_offset(second.url, "1") == 1.0  # loaded on the second only

            def fleet() -> dict[str, dict[str, object]]:
                return {r["address"]: r for r in admin.get("/api/replicas").json()}

            wanted = {f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"}
            eventually(lambda: set(fleet()) == wanted and fleet()[
                f"127.0.0.1:{second.port}"]["versions"] != [])
            replicas = fleet()
            mine, theirs = replicas[f"127.0.0.1:{first.port}"], replicas[f"127.0.0.1:{second.port}"]
            assert mine["this"] and not theirs["this"]
            assert mine["budget_bytes"] == 512 * 1024 * 1024 and mine["versions"] == []
            assert [(v["model"], v["version"]) for v in theirs["versions"]] == [("shared", 1)]
            assert theirs["used_bytes"] == theirs["versions"][0]["bytes"] > 0
            holders = admin.get("/api/models/shared").json()["versions"][0]["replicas"]
            assert [h["address"] for h in holders] == [f"127.0.0.1:{second.port}"]
            listed = first.cli("replicas").stdout
            assert f"127.0.0.1:{second.port}" in listed and "shared:1" in listed

            second.stop(signal.SIGKILL)
            gone_after = eventually(lambda: set(fleet()) == {f"127.0.0.1:{first.port}"},
                                    timeout=20)
            assert gone_after <= 15
            assert admin.get("/api/models/shared").json()["versions"][0]["replicas"] == []
    finally:
        first.stop()
        second.stop()
