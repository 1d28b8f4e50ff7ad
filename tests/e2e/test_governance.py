"""The fleet report and cleanup, through the real server, with a clock the test moves.

A fleet is built "days apart" (the server's ``--clock-file`` shifts its clock), then the report
is checked finding by finding, a dry run is shown to change nothing, and an apply to free
storage, leave served versions alone, and archive what it should. A last test kills the server
in the middle of cleanups and checks that the registry and the store stay consistent.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_notifications import Receiver
from tests.onnx_models import failing_model, offset_model, slow_model
from tests.support import ServerProcess, eventually, push

DAY = 86400
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]}


class Fleet:
    """A server whose clock the test sets, in days from now."""

    def __init__(self, root: Path) -> None:
        self.clock = root / "clock"
        self.server = ServerProcess(root / "var", "--clock-file", str(self.clock),
                                    "--usage-flush-interval", "0.2")
        self.http = httpx.Client(base_url=self.server.url, timeout=60)

    def travel(self, days: float) -> None:
        self.clock.write_text(f"{days * DAY}\n")

    def infer(self, name: str, version: str | None = None, n: int = 1) -> list[httpx.Response]:
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
        return [self.http.post(path, json=BODY) for _ in range(n)]

    def blob(self, sha256: str) -> Path:
        return self.server.data_dir / "store" / "sha256" / sha256[:2] / sha256

    def close(self) -> None:
        self.http.close()
        self.server.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Day 0: shop v1, v2 (production 1), dup v1 (the bytes of shop v1), old v1, v2 (v1
    archived), flaky, slow, broken, staged v1-v3. Day 10: shop v3, v4; production -> 3;
    staged gets a canary and a shadow. Traffic on days 0, 38, 39 and 40, when the report is made."""
    folder = tmp_path_factory.mktemp("fleet")
    fleet = Fleet(folder)
    models = folder / "models"
    models.mkdir()
    http = fleet.http
    fleet.travel(0)
    for n in (1, 2, 3, 4):
        offset_model(models / f"o{n}.onnx", float(n))
    push(http, "shop", models / "o1.onnx")
    push(http, "shop", models / "o2.onnx")
    http.put("/api/models/shop/aliases/production", json={"version": 1})
    push(http, "dup", models / "o1.onnx")
    http.put("/api/models/dup/aliases/production", json={"version": 1})
    for n in (1, 2):
        push(http, "old", offset_model(models / f"old{n}.onnx", 10.0 + n))
    http.put("/api/models/old/aliases/production", json={"version": 2})
    assert http.post("/api/models/old/versions/1/archive").status_code == 200
    push(http, "flaky", failing_model(models / "failing.onnx"))
    push(http, "slow", slow_model(models / "slow.onnx"),
         metadata=json.dumps({"health": {"max_p99_ms": 2}}))
    broken = push(http, "broken", offset_model(models / "broken.onnx", 7.0)).json()
    fleet.blob(broken["sha256"]).write_bytes(b"not an onnx model")
    for n in (1, 2, 3):
        push(http, "staged", offset_model(models / f"staged{n}.onnx", 20.0 + n))
    http.put("/api/models/staged/aliases/production", json={"version": 1})
    assert {r.status_code for r in fleet.infer("shop", n=3)} == {200}
    fleet.travel(1)
    archived = fleet.infer("old", "1")[0]
    assert archived.status_code == 404 and "archived" in archived.json()["error"]
    fleet.travel(10)
    push(http, "shop", models / "o3.onnx")
    push(http, "shop", models / "o4.onnx")
    assert http.post("/api/models/shop/promote", json={"version": 3}).status_code == 200
    http.put("/api/models/staged/traffic", json={
        "routes": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}],
        "shadows": [{"version": 3, "sample_rate": 0.5}]})
    fleet.travel(38)
    assert {r.status_code for r in fleet.infer("shop", n=5)} == {200}
    fleet.travel(39)
    assert fleet.infer("shop", "2")[0].status_code == 200  # loads v2, then leaves it idle
    fleet.travel(40)
    assert {r.status_code for r in fleet.infer("flaky", n=5)} == {500}
    assert {r.status_code for r in fleet.infer("slow", n=5)} == {200}
    assert {r.status_code for r in fleet.infer("broken")} == {503}
    yield fleet
    fleet.close()


def versions(report: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(m["name"], v["version"]): v for m in report["models"] for v in m["versions"]}


def findings(version: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["code"]: f["evidence"] for f in version["findings"]}


def test_report_shows_every_finding_with_its_evidence(fleet: Fleet) -> None:
    report = fleet.http.get("/api/report").json()
    found = {key: findings(v) for key, v in versions(report).items()}
    shop1 = found["shop", 1]
    assert set(shop1) == {"STALE", "SUPERSEDED", "DUPLICATE"}
    assert shop1["STALE"]["unused_days"] == pytest.approx(40, abs=0.01)
    assert shop1["STALE"]["stale_after_days"] == 30
    assert shop1["SUPERSEDED"] == {"production": 3, "requests_in_window": 0, "window_days": 7}
    assert shop1["DUPLICATE"]["same_as"] == [{"model": "dup", "version": 1}]
    assert set(found["shop", 2]) == {"IDLE_IN_MEMORY"}
    assert found["shop", 2]["IDLE_IN_MEMORY"]["idle_hours"] == pytest.approx(24, abs=0.1)
    assert set(found["shop", 3]) == {"IDLE_IN_MEMORY"}  # used on day 38; production keeps it
    assert versions(report)["shop", 3]["protected_by"] == ["alias production"]
    assert set(found["shop", 4]) == {"NEVER_USED"}
    assert found["shop", 4]["NEVER_USED"]["age_days"] == pytest.approx(30, abs=0.01)
    assert set(found["dup", 1]) == {"NEVER_USED", "DUPLICATE", "IDLE_IN_MEMORY"}  # loaded by its alias
    assert set(found["flaky", 1]) == {"UNHEALTHY", "ERROR_PRONE"}
    assert found["flaky", 1]["ERROR_PRONE"]["errors"] == 5
    assert set(found["slow", 1]) == {"SLOW"}
    assert found["slow", 1]["SLOW"]["threshold_ms"] == 2
    assert set(found["broken", 1]) == {"FAILED_TO_LOAD", "ERROR_PRONE"}  # its request failed
    assert found["broken", 1]["FAILED_TO_LOAD"]["reason"]
    assert set(found["old", 1]) == {"ARCHIVED"}
    by_model = {m["name"]: m for m in report["models"]}
    assert (by_model["staged"]["production"], by_model["staged"]["canary"],
            by_model["staged"]["shadows"]) == (1, [2], [3])
    assert by_model["shop"]["requests"] == 6 and by_model["flaky"]["errors"] == 5
    assert versions(report)["staged", 2]["protected_by"] == ["traffic route"]
    assert versions(report)["slow", 1]["protected_by"] == ["traffic default route"]
    totals = report["totals"]
    assert (totals["models"], totals["versions"], totals["archived_versions"]) == (7, 12, 1)
    assert totals["versions_in_use"] == 5  # shop 2 and 3, flaky, slow, broken
    assert totals["loaded_versions"] >= 2
    sizes = {key: v["size"] for key, v in versions(report).items()}
    assert totals["reclaimable_bytes"] == sizes["old", 1] + sizes["shop", 4]  # shop 1's bytes stay


def test_report_cli_as_table_csv_and_json(fleet: Fleet) -> None:
    table = fleet.server.cli("report").stdout
    assert "models 7" in table and "STALE SUPERSEDED DUPLICATE" in table
    rows = list(csv.DictReader(io.StringIO(fleet.server.cli("report", "--csv").stdout)))
    assert {(r["model"], r["version"]) for r in rows if "NEVER_USED" in r["findings"]} == {
        ("shop", "4"), ("dup", "1"), ("old", "2"), ("staged", "1"), ("staged", "2"), ("staged", "3")}
    looser = json.loads(fleet.server.cli("report", "--json", "--model", "shop",
                                         "--stale-after", "60d").stdout)
    assert [m["name"] for m in looser["models"]] == ["shop"]
    assert "STALE" not in findings(versions(looser)["shop", 1])


def test_cleanup_dry_run_changes_nothing_then_apply_frees_storage(fleet: Fleet) -> None:
    http = fleet.http
    before = {name: http.get(f"/api/models/{name}").json() for name in ("shop", "old", "staged")}
    old1 = before["old"]["versions"][0]
    assert fleet.blob(old1["sha256"]).exists()
    dry = http.post("/api/cleanup", json={}).json()
    planned = {(a["action"], a["model"], a["version"], a["finding"]) for a in dry["actions"]}
    assert planned == {("unload", "shop", 2, "IDLE_IN_MEMORY"), ("archive", "shop", 1, "STALE"),
                       ("archive", "shop", 4, "NEVER_USED"), ("purge", "old", 1, "ARCHIVED")}
    assert dry["dry_run"] and dry["storage_bytes"] == old1["size"] and dry["memory_bytes"] > 0
    assert not any(a["done"] for a in dry["actions"])
    after_dry = {name: http.get(f"/api/models/{name}").json() for name in before}
    for name in before:
        assert [(v["version"], v["archived"], v["state"]) for v in after_dry[name]["versions"]] == \
            [(v["version"], v["archived"], v["state"]) for v in before[name]["versions"]]
    assert fleet.blob(old1["sha256"]).exists()

    shown = fleet.server.cli("cleanup", "--finding", "never_used").stdout
    assert "archive" in shown and "dry run" in shown and "purge" not in shown
    applied = json.loads(fleet.server.cli("cleanup", "--apply", "--json").stdout)
    assert all(a["done"] for a in applied["actions"]) and len(applied["actions"]) == 4
    assert applied["storage_bytes"] == old1["size"]
    assert not fleet.blob(old1["sha256"]).exists()  # purged: blob and version gone
    assert http.get("/api/models/old/versions/1").status_code == 404
    for name, version in (("shop", "1"), ("shop", "4")):
        gone = fleet.infer(name, version)[0]
        assert gone.status_code == 404 and "archived" in gone.json()["error"]
    assert fleet.blob(before["shop"]["versions"][0]["sha256"]).exists()  # dup v1 still uses it
    assert http.get("/api/models/shop/versions/2").json()["state"] != "READY"
    for name in ("shop", "old", "staged", "dup"):  # served versions untouched
        assert {r.status_code for r in fleet.infer(name, n=2)} == {200}
    kinds = [(e["kind"], e["details"].get("reason")) for e in http.get("/api/models/shop/events").json()]
    assert ("version.archived", "STALE") in kinds and ("version.unloaded", "IDLE_IN_MEMORY") in kinds
    assert ("version.deleted", "purged") in [
        (e["kind"], e["details"].get("reason")) for e in http.get("/api/models/old/events").json()]
    assert "unarchived" in fleet.server.cli("unarchive", "shop", "4").stdout
    assert fleet.infer("shop", "4")[0].status_code == 200
    assert http.post("/api/models/staged/versions/2/archive").status_code == 409  # canary route
    again = http.post("/api/cleanup", json={"dry_run": False, "model": "shop"}).json()
    assert [a["action"] for a in again["actions"]] == []  # shop 4 was just used


@pytest.mark.parametrize(("body", "message"), [
    ({"dry_run": "no"}, "dry_run"), ({"findings": ["STALISH"]}, "unknown findings"),
    ({"stale_after": "soon"}, "stale_after"), ({"force": True}, "unknown cleanup fields"),
])
def test_bad_cleanup_requests_are_400(fleet: Fleet, body: dict[str, Any], message: str) -> None:
    response = fleet.http.post("/api/cleanup", json=body)
    assert response.status_code == 400 and message in response.json()["error"]


def test_killed_mid_cleanup_the_registry_and_store_stay_consistent(tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    server = ServerProcess(tmp_path / "var", "--clock-file", str(clock))
    store = tmp_path / "var" / "store" / "sha256"
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for i in range(40):
            push(http, f"m{i:02d}", offset_model(tmp_path / f"m{i}.onnx", float(i)))
            push(http, f"m{i:02d}", offset_model(tmp_path / f"n{i}.onnx", 100.0 + i))
            http.put(f"/api/models/m{i:02d}/aliases/production", json={"version": 2})
            http.post(f"/api/models/m{i:02d}/versions/1/archive")
    clock.write_text(str(20 * DAY))
    rng = random.Random(7)
    remaining: list[int] = []
    for kill in range(4):
        thread = threading.Thread(target=clean_up_until_killed, args=(server.url,))
        thread.start()
        blobs = len(list(store.glob("*/*")))
        deadline = time.monotonic() + 10
        while len(list(store.glob("*/*"))) == blobs and time.monotonic() < deadline:
            time.sleep(0.002)  # until the purges have begun
        if kill:  # the first kill comes as soon as a purge is seen: 39 others cannot be done yet
            time.sleep(rng.uniform(0, 0.05))
        server.stop(signal.SIGKILL)
        thread.join()
        server = ServerProcess(tmp_path / "var", "--clock-file", str(clock))
        assert_consistent(server, store)
        remaining.append(archived_count(server))
    orphan = b"the blob of a version whose purge was cut short"
    digest = hashlib.sha256(orphan).hexdigest()
    (store / digest[:2]).mkdir(exist_ok=True)
    (store / digest[:2] / digest).write_bytes(orphan)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert {"sha256": digest, "size": len(orphan)} in http.get("/api/report").json()["orphan_blobs"]
        done = http.post("/api/cleanup", json={"dry_run": False}).json()["actions"]
        assert {"action": "delete_blob", "done": True}.items() <= next(
            a for a in done if a["sha256"] == digest).items()
        report = http.get("/api/report").json()
    assert_consistent(server, store)
    print("archived versions left after each kill:", remaining)
    assert 0 < remaining[0] < 40, "the first kill lands in the middle of the purges"
    assert report["orphan_blobs"] == [] and report["totals"]["archived_versions"] == 0
    assert len(list(store.glob("*/*"))) == 40  # only the production blobs are left
    server.stop()


def archived_count(server: ServerProcess) -> int:
    return int(httpx.get(f"{server.url}/api/report").json()["totals"]["archived_versions"])


def clean_up_until_killed(url: str) -> None:
    with contextlib.suppress(httpx.TransportError):  # the server dies under it
        httpx.post(f"{url}/api/cleanup", json={"dry_run": False}, timeout=60)


def assert_consistent(server: ServerProcess, store: Path) -> None:
    """Every registered version's blob is in the store, with its digest."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for model in http.get("/api/models").json():
            for version in http.get(f"/api/models/{model['name']}").json()["versions"]:
                blob = store / version["sha256"][:2] / version["sha256"]
                assert hashlib.sha256(blob.read_bytes()).hexdigest() == version["sha256"]


def test_a_scheduled_cleanup_tells_the_owners_then_archives(tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    receiver = Receiver()
    server = ServerProcess(tmp_path / "var", "--clock-file", str(clock), "--cleanup-interval", "0.3",
                           "--cleanup-notice", "2d")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for n in (1, 2):
                push(http, "nightly", offset_model(tmp_path / f"v{n}.onnx", float(n)))
            http.patch("/api/models/nightly/settings", json={"owner": "team-night", "notify": [
                {"url": f"{receiver.url}/nightly", "events": ["cleanup_planned", "archived"]}]}
                       ).raise_for_status()
            # No production alias: version 1 is not SUPERSEDED, and nothing is archivable until
            # the clock passes the grace (version 2, the default route, is protected).
            clock.write_text(str(8 * DAY))  # version 1 has gone unused for longer than the grace

            def planned() -> str | None:
                report = http.get("/api/report", params={"model": "nightly"}).json()
                return report["models"][0]["versions"][0]["archive_planned_after"]

            eventually(planned, what="the planned archive")
            eventually(lambda: receiver.messages("/nightly", "cleanup_planned"),
                       what="the owners told")
            (told,) = receiver.messages("/nightly", "cleanup_planned")
            assert told["version"] == 1 and told["owner"] == "team-night"
            assert told["reason"].startswith("NEVER_USED: to be archived after ")
            assert http.get("/api/models/nightly/versions/1").json()["archived"] is False
            assert receiver.messages("/nightly", "archived") == []

            clock.write_text(str(10 * DAY + 3600))  # the two days' notice have passed
            eventually(lambda: http.get("/api/models/nightly/versions/1").json()["archived"],
                       what="the scheduled archive")
            eventually(lambda: receiver.messages("/nightly", "archived"), what="the archive told")
            (archived_message,) = receiver.messages("/nightly", "archived")
            assert archived_message["version"] == 1
            assert planned() is None  # the plan is done
            events = http.get("/api/models/nightly/events").json()
            assert http.get("/api/models/nightly/versions/2").json()["archived"] is False
    finally:
        server.stop()
        receiver.close()
    archived = next(e for e in events if e["kind"] == "version.archived")
    assert archived["actor"] == "scheduled-cleanup" and archived["details"]["reason"] == "NEVER_USED"
