"""Input drift through the real server: a version fed from its reference distribution raises no
alarm over 20 windows; one whose third feature moves by one standard deviation has exactly that
column flagged, in the drift report, the CLI, /metrics, its health and a webhook; a version
without a reference gets one from its first requests."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from onnx import TensorProto

from tests.e2e.test_model_cache import metric
from tests.e2e.test_notifications import Receiver
from tests.e2e.test_v2_datatypes import identity_model
from tests.onnx_models import linear_model
from tests.support import ServerProcess, eventually, push

WEIGHTS = np.eye(4, dtype=np.float32)
BASELINE = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("drift") / "var",
                           "--drift-baseline", str(BASELINE))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return linear_model(tmp_path_factory.mktemp("linear") / "linear.onnx", WEIGHTS)


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def send(server: ServerProcess, path: str, rows: np.ndarray) -> None:
    """One request per row, from 8 clients."""
    def one(chunk: np.ndarray) -> list[int]:
        with httpx.Client(base_url=server.url, timeout=30) as own:
            return [own.post(path, json={"inputs": [{"name": "x", "datatype": "FP32",
                                                     "shape": [1, 4], "data": row.tolist()}]}
                             ).status_code for row in chunk]

    with ThreadPoolExecutor(8) as pool:
        statuses = [s for chunk in pool.map(one, np.array_split(rows, 8)) for s in chunk]
    assert set(statuses) == {200}


def seen(report: dict) -> int:
    """Requests of one row digested: profiled, or skipped (more than 256 in a second)."""
    return int(report["live_rows"] + report["skipped_requests"])


def version_report(client: httpx.Client, number: int) -> dict:
    report = client.get("/api/models/linear/drift").json()
    return next(v for v in report["versions"] if v["version"] == number)


def test_no_false_alarm_then_the_shifted_column_alone(server: ServerProcess,
                                                      client: httpx.Client, model: Path,
                                                      tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    reference = rng.normal(size=(2000, 4)).astype(np.float32)
    np.save(tmp_path / "reference.npy", reference)
    server.cli("push", str(model), "--name", "linear", "--reference",
               str(tmp_path / "reference.npy"))

    for window in range(20):  # 2,000 requests from the reference's distribution
        send(server, "/v2/models/linear/versions/1/infer", rng.normal(size=(100, 4)))
        eventually(lambda n=window: seen(version_report(client, 1)) >= 100 * (n + 1),
                   what="the requests digested")
        report = version_report(client, 1)
        assert not [c["column"] for c in report["columns"] if c["drifted"]], report
    assert report["judged"] and report["reference"] == {"rows": 2000, "source": "upload"}

    receiver = Receiver()
    try:
        hook = f"{receiver.url}/drift"
        assert client.patch("/api/models/linear/settings", json={
            "owner": "team-a", "notify": [{"url": hook, "events": ["drift"]}]}).status_code == 200
        assert push(client, "linear", model).status_code == 201
        header = "a,b,c,d\n"
        (tmp_path / "reference.csv").write_text(
            header + "\n".join(",".join(f"{v:.6f}" for v in row) for row in reference))
        printed = server.cli("reference", "linear", "2", str(tmp_path / "reference.csv")).stdout
        assert "2000 rows" in printed and "x[2]" in printed
        shifted = rng.normal(size=(400, 4))
        shifted[:, 2] += 1.0  # one standard deviation
        send(server, "/v2/models/linear/versions/2/infer", shifted)

        eventually(lambda: seen(version_report(client, 2)) >= 400, what="digested")
        eventually(lambda: any(c["drifted"] for c in version_report(client, 2)["columns"]),
                   what="the drift verdict")
        report = version_report(client, 2)
        drifted = sorted((c for c in report["columns"] if c["drifted"]), key=lambda c: c["column"])
        # the model passes x through: its output y[2] moved with it, and nothing else did
        assert [c["column"] for c in drifted] == ["output:y[2]", "x[2]"], report
        assert drifted[1]["psi"] > 0.2 and drifted[1]["psi_threshold"] == 0.2
        assert len(drifted[1]["reference"]) == len(drifted[1]["live"]) == len(drifted[1]["bins"])
        assert sum(drifted[0]["reference"]) == 2000  # the version answered the reference sample
        health = client.get("/api/models/linear/health").json()["versions"]
        second = next(h for h in health if h["version"] == 2)
        assert second["status"] == "degraded"
        assert any(r.startswith("input x[2] drifted: PSI ") and r.endswith("> 0.20")
                   for r in second["reasons"]), second
        assert any(r.startswith("output y[2] drifted: PSI ") for r in second["reasons"])
        assert next(h for h in health if h["version"] == 1)["status"] == "healthy"
        report_rows = client.get("/api/report", params={"model": "linear"}).json()
        assert "DRIFTED" in json.dumps(report_rows) and "input x[2] drifted" in json.dumps(
            report_rows)
        assert metric(server, "model_manager_drift_score", model="linear", version="2",
                      column="x[2]") > 0.2
        assert metric(server, "model_manager_drift_score", model="linear", version="2",
                      column="x[0]") < 0.2
        assert "DRIFTED" in server.cli("drift", "linear").stdout
        eventually(lambda: receiver.messages("/drift", "drift"), what="the drift webhook")
        (message,) = receiver.messages("/drift", "drift")  # one per cooldown, not one per column
        assert message["version"] == 2 and "drifted: PSI" in message["reason"]
        assert message["owner"] == "team-a"
    finally:
        receiver.close()


def test_a_categorical_column_whose_mix_changes_is_flagged(server: ServerProcess,
                                                          client: httpx.Client,
                                                          tmp_path: Path) -> None:
    model = identity_model(tmp_path / "codes.onnx", TensorProto.INT64)
    assert push(client, "codes", model).status_code == 201
    rng = np.random.default_rng(11)
    reference = np.stack([rng.choice(3, 1000, p=[0.6, 0.3, 0.1]), rng.choice(3, 1000),
                          rng.choice(3, 1000)], axis=1)
    np.save(tmp_path / "codes.npy", reference)
    server.cli("reference", "codes", "1", str(tmp_path / "codes.npy"))
    live = np.stack([rng.choice(3, 300, p=[0.1, 0.3, 0.6]), rng.choice(3, 300),
                     rng.choice(3, 300)], axis=1)

    def one(chunk: np.ndarray) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as own:
            for row in chunk:
                assert own.post("/v2/models/codes/infer", json={"inputs": [{
                    "name": "x", "datatype": "INT64", "shape": [1, 3],
                    "data": row.tolist()}]}).status_code == 200

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, np.array_split(live, 8)))
    eventually(lambda: any(c["drifted"] for c in
                           client.get("/api/models/codes/drift").json()["versions"][0]["columns"]),
               what="the categorical drift")
    columns = client.get("/api/models/codes/drift").json()["versions"][0]["columns"]
    by_name = {c["column"]: c for c in columns}
    assert by_name["x[0]"]["kind"] == "categorical" and by_name["x[0]"]["bins"] == \
        ["0", "1", "2", "(other)"]
    assert sorted(c["column"] for c in columns if c["drifted"]) == ["output:echo[0]", "x[0]"]


def test_a_version_without_a_reference_gets_one_from_its_first_requests(
        server: ServerProcess, client: httpx.Client, model: Path) -> None:
    assert push(client, "baseline", model).status_code == 201
    rng = np.random.default_rng(3)
    send(server, "/v2/models/baseline/infer", rng.normal(size=(BASELINE // 2, 4)))

    def gathered() -> int:
        report = client.get("/api/models/baseline/drift").json()["versions"][0]
        return report["baseline_rows"] if report["reference"] is None else -1

    eventually(lambda: gathered() >= BASELINE // 2, what="half the baseline gathered")
    send(server, "/v2/models/baseline/infer", rng.normal(size=(BASELINE, 4)))
    eventually(lambda: client.get("/api/models/baseline/drift").json()["versions"][0]
               ["reference"] is not None, what="the baseline reference")
    report = client.get("/api/models/baseline/drift").json()["versions"][0]
    assert report["reference"]["source"] == "baseline"
    assert report["reference"]["rows"] >= BASELINE
    assert sorted(c["column"] for c in report["columns"]) == \
        [*(f"output:y[{i}]" for i in range(4)), *(f"x[{i}]" for i in range(4))]


def test_a_reference_part_of_the_upload(client: httpx.Client, model: Path,
                                        tmp_path: Path) -> None:
    sample = np.random.default_rng(5).normal(size=(500, 4))
    np.savez(tmp_path / "sample.npz", x=sample)
    with open(model, "rb") as f, open(tmp_path / "sample.npz", "rb") as r:
        uploaded = client.post("/api/models/with-reference/versions",
                               files={"file": ("linear.onnx", f), "reference": ("sample.npz", r)})
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["drift_reference"] == {"rows": 500}
    report = client.get("/api/models/with-reference/drift").json()["versions"][0]
    assert report["reference"] == {"rows": 500, "source": "upload"}
    with open(model, "rb") as f:
        refused = client.post("/api/models/with-reference/versions",
                              files={"file": ("linear.onnx", f),
                                     "reference": ("sample.txt", b"1,2")})
    assert refused.status_code == 400 and "an .npy, .npz or .csv" in refused.json()["error"]
    assert len(client.get("/api/models/with-reference").json()["versions"]) == 1


def test_bad_references_and_thresholds_are_refused(client: httpx.Client, model: Path) -> None:
    push(client, "strict-drift", model)
    url = "/api/models/strict-drift/versions/1/reference"
    wrong_name = io.BytesIO()
    np.savez(wrong_name, z=np.zeros((3, 4)))
    for body, name, message in ((b"not numbers\n1,x", "r.csv", "cannot be read"),
                                (wrong_name.getvalue(), "r.npz", "the version takes ['x']"),
                                (b"\x00\x01", "r.npy", "cannot be read"),
                                (b"a,b", "r.parquet", "an .npy, .npz or .csv")):
        refused = client.put(url, params={"filename": name}, content=body)
        assert refused.status_code == 400 and message in refused.json()["error"], refused.text
    for change, message in (({"drift_psi": 0}, "drift_psi is a positive number"),
                            ({"drift_ks": 2}, "drift_ks is a number in (0, 1]")):
        refused = client.patch("/api/models/strict-drift/settings", json=change)
        assert refused.status_code == 400 and message in refused.json()["error"]
    assert client.put("/api/models/strict-drift/versions/9/reference",
                      content=json.dumps([1]).encode()).status_code == 404
