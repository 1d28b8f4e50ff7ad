"""Replicas on one registry and one store behind HAProxy, started by deploy/fleet/run-local.sh:
each model is served by one replica until its traffic needs more, and a replica that dies
hands its models to the others."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fleet import CONFIG, Answer, LocalFleet, drive, haproxy_path, is_alive, zipf_trace
from tests.onnx_models import offset_model, slow_model, weights_model
from tests.support import eventually, push

MODELS = [f"table{i:02d}" for i in range(30)]
MEGABYTES = 10
X = [1.0, 2.0, 3.0, 4.0]


def lookup(model: str) -> dict[str, object]:
    return {"inputs": [{"name": "idx", "datatype": "INT64", "shape": [1], "data": [0]}]}


def rows(model: str) -> dict[str, object]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X}]}


def first_row(seed: int) -> list[float]:
    """Row 0 of ``weights_model(..., MEGABYTES, seed)``'s table: what ``lookup`` gets back."""
    table = np.random.default_rng(seed).random((int(MEGABYTES * 1e6 / 16), 4), dtype=np.float32)
    return table[0].tolist()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """Three replicas that run one prediction per model at a time, with 30 lookup tables of
    10 MB (each table's rows differ) and a slow model named ``hot``, uploaded through HAProxy."""
    folder = tmp_path_factory.mktemp("fleet")
    with LocalFleet(folder / "data", 3, "--model-concurrency", "1", "--model-queue", "512") as fleet:
        with httpx.Client(base_url=fleet.url, timeout=120) as admin:
            for seed, name in enumerate(MODELS):
                path = weights_model(folder / f"{name}.onnx", MEGABYTES, seed=seed)
                assert push(admin, name, path).status_code == 201
                path.unlink()
            assert push(admin, "hot", slow_model(folder / "hot.onnx")).status_code == 201
        yield fleet


def test_the_shipped_config_is_valid() -> None:
    checked = subprocess.run([haproxy_path(), "-c", "-f", str(CONFIG)], capture_output=True,
                             text=True, env={**os.environ, "MM_FLEET_PORT": "8080"})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout


def test_the_script_writes_one_server_line_per_replica_in_each_backend(fleet: LocalFleet) -> None:
    config = (fleet.data / "haproxy.cfg").read_text()
    for replica in fleet.replicas:
        address = replica.url.removeprefix("http://")
        assert config.count(f"server {replica.name} {address}\n") == 2
    assert "balance uri path-only depth 3" in config
    checked = subprocess.run([haproxy_path(), "-c", "-f", str(fleet.data / "haproxy.cfg")],
                             capture_output=True, text=True,
                             env={**os.environ, "MM_FLEET_PORT": str(fleet.port)})
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.timeout(180)
def test_skewed_traffic_loads_each_model_about_once_across_the_replicas(fleet: LocalFleet
                                                                        ) -> None:
    trace = zipf_trace(MODELS, 300, s=1.1, seed=1)
    answers = drive(fleet.url, trace, clients=6, body=lookup)
    assert len(answers) == len(trace)
    assert [a for a in answers if a.status != 200] == []
    expected = {name: first_row(seed) for seed, name in enumerate(MODELS)}
    wrong = [a.model for a in answers if not np.allclose(a.outputs, expected[a.model])]
    assert wrong == []  # each answer came from the model asked, whichever replica served it
    copies = [(r.name, m) for r in fleet.replicas for m, _ in r.loaded() if m in MODELS]
    distinct = set(trace)
    assert {m for _, m in copies} == distinct
    assert len(copies) <= 1.3 * len(distinct), copies  # round-robin would load about 3x
    assert len({r for r, _ in copies}) == 3  # the models are spread over every replica


@pytest.mark.timeout(180)
def test_a_model_hotter_than_one_replica_is_loaded_on_a_second(fleet: LocalFleet) -> None:
    answers = drive(fleet.url, ["hot"] * 240, clients=30, body=rows)
    assert [a for a in answers if a.status != 200] == []
    assert len({tuple(a.outputs) for a in answers}) == 1
    assert len(fleet.holders()["hot"]) >= 2  # one prediction at a time each: HAProxy spilled


@pytest.mark.timeout(180)
def test_a_killed_replica_hands_its_models_to_the_others(tmp_path: Path) -> None:
    names = [f"offset{i}" for i in range(9)]
    with LocalFleet(tmp_path / "data", 3) as fleet:
        with httpx.Client(base_url=fleet.url, timeout=60) as admin:
            for i, name in enumerate(names):
                assert push(admin, name, offset_model(tmp_path / f"{name}.onnx", i)).status_code == 201
        assert all(a.status == 200 for a in drive(fleet.url, names, clients=1, body=rows))
        before = fleet.holders()
        victim = max(fleet.replicas, key=lambda r: len(r.loaded()))
        moved = {m for m, held in before.items() if held == {victim.name}}
        assert moved  # the victim was the only one holding some models

        stop = threading.Event()
        during: list[Answer] = []
        traffic = threading.Thread(target=lambda: during.extend(
            drive(fleet.url, names * 10_000, clients=6, body=rows, stop=stop)))
        traffic.start()
        time.sleep(1.0)
        os.kill(victim.pid, signal.SIGKILL)
        time.sleep(4.0)  # HAProxy marks it down after two failed checks, a second apart
        stop.set()
        traffic.join()
        after = drive(fleet.url, names * 10, clients=6, body=rows)
        now = fleet.holders()
        victim_address = victim.url.removeprefix("http://")
        with httpx.Client(base_url=fleet.url, timeout=30) as admin:
            eventually(lambda: victim_address not in {
                r["address"] for r in admin.get("/api/replicas").json()}, timeout=15,
                what="the killed replica gone from the replica list")
            assert len(admin.get("/api/replicas").json()) == 2

    failed = [a for a in during if a.status != 200]
    assert len(during) > 100 and len(failed) <= 6, failed  # at most the requests in flight
    assert [a for a in after if a.status != 200] == []
    assert all(a.outputs[0] == X[0] + int(a.model.removeprefix("offset")) for a in after)
    assert moved <= set(now)  # the victim's models now live on the others...
    assert all(before[m] <= now[m] for m in names if m not in moved)  # ...and only those moved


def test_sigterm_stops_every_replica_and_haproxy(tmp_path: Path) -> None:
    fleet = LocalFleet(tmp_path / "data", 2)
    children = [int(p) for p in subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(fleet.process.pid)], capture_output=True,
        text=True).stdout.split()]
    pids = {r.pid for r in fleet.replicas} | set(children)
    assert len(pids) == 3 and all(is_alive(p) for p in pids)  # two replicas and haproxy
    ports = [fleet.port, *(int(r.url.rsplit(":", 1)[1]) for r in fleet.replicas)]
    assert fleet.stop() == 128 + signal.SIGTERM
    assert [p for p in pids if is_alive(p)] == []
    assert [p for p in ports if is_listening(p)] == []


def is_listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
