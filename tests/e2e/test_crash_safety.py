"""SIGKILL at random moments of uploads, alias changes, cleanups and usage flushes, many times.

After every kill the data the server left must hold together, read straight from the SQLite file
and the blob files: every acknowledged upload is registered with its digest and its blob hashes
to it, production is where the last acknowledged move put it, every alias names an existing
version; a leftover temp file or orphan blob is found by ``doctor`` (and repaired); every
prediction answered before the server last said it had no usage waiting is counted.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from model_manager import doctor
from model_manager.registry import Registry
from model_manager.store import LocalStore
from tests.onnx_models import offset_model
from tests.support import ServerProcess, push

KILLS = int(os.environ.get("MODEL_MANAGER_TEST_KILLS", "30"))
"""30 in `make test` (each restart waits a second or two for model processes); `make crash`
runs 200."""
FLUSH = 0.2
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]}


@dataclasses.dataclass
class Acks:
    """What the server acknowledged, and the writes it had not answered when it was killed."""

    versions: dict[int, str] = dataclasses.field(default_factory=dict)
    """Acknowledged uploads (number: sha256) not purged since by an acknowledged cleanup."""
    production: int | None = None
    alias_in_flight: int | None = None
    cleanup_in_flight: bool = False
    writes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


class Workload(threading.Thread):
    """Uploads, alias moves, cleanups and predictions until the server dies under it."""

    def __init__(self, url: str, models: Path, rng: random.Random, acked: list[float],
                 acks: Acks) -> None:
        super().__init__(daemon=True)
        self.url, self.models, self.rng, self.acked, self.acks = url, models, rng, acked, acks
        self.flushed = 0
        """Predictions acknowledged before the server last said no usage waited to be written."""

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=10) as client:
                while True:
                    self.step(client)
        except (httpx.TransportError, OSError):
            return  # killed

    def step(self, client: httpx.Client) -> None:
        roll = self.rng.random()
        if roll < 0.15:
            self.upload(client)
        elif roll < 0.3:
            self.move_alias(client)
        elif roll < 0.35:
            self.clean_up(client)
        elif roll < 0.45:
            self.note_flushed(client)
        elif client.post("/v2/models/crashy/infer", json=BODY).status_code == 200:
            self.acked.append(time.monotonic())

    def note_flushed(self, client: httpx.Client) -> None:
        """Wait a little for the server to say no usage waits to be written: every prediction
        answered before then is in the registry."""
        answered = len(self.acked)
        for _ in range(10):
            if client.get("/api/status").json()["writes_pending"]["usage"] == 0:
                self.flushed = answered
                return
            time.sleep(FLUSH / 4)

    def upload(self, client: httpx.Client) -> None:
        answer = push(client, "crashy", self.models / f"m{self.rng.randrange(40)}.onnx")
        if answer.status_code == 201:
            self.acks.versions[answer.json()["version"]] = answer.json()["sha256"]
            self.acks.writes["upload"] += 1

    def move_alias(self, client: httpx.Client) -> None:
        versions = client.get("/api/models/crashy").json()["versions"]
        target = self.rng.choice([v["version"] for v in versions if not v["archived"]])
        self.acks.alias_in_flight = target
        answer = client.put("/api/models/crashy/aliases/production", json={"version": target})
        if answer.status_code == 200:
            self.acks.production = target
            self.acks.writes["alias"] += 1
        self.acks.alias_in_flight = None

    def clean_up(self, client: httpx.Client) -> None:
        self.acks.cleanup_in_flight = True
        answer = client.post("/api/cleanup", json={"dry_run": False, "never_used_grace": "0s",
                                                   "purge_after": "0s"})
        if answer.status_code == 200:
            for action in answer.json()["actions"]:
                if action["action"] == "purge" and action["done"]:
                    self.acks.versions.pop(action["version"], None)
            self.acks.writes["cleanup"] += 1
        self.acks.cleanup_in_flight = False


@pytest.mark.timeout(max(600, KILLS * 12))
def test_the_data_holds_together_after_every_kill(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for i in range(40):
        offset_model(models / f"m{i}.onnx", float(i))
    data, rng, acked, served = tmp_path / "var", random.Random(1), [], 0
    args = ("--usage-flush-interval", f"{FLUSH}s")
    server = started(data, *args)
    acks = Acks()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        acks.versions[1] = push(client, "crashy", models / "m0.onnx").json()["sha256"]
        client.put("/api/models/crashy/aliases/production", json={"version": 1})
        acks.production = 1
    found_kinds: set[str] = set()
    recorded = checked = 0
    for _ in range(KILLS):
        acked.clear()
        workload = Workload(server.url, models, rng, acked, acks)
        workload.start()
        time.sleep(rng.uniform(0.1, 0.6))
        server.stop(signal.SIGKILL)
        workload.join(timeout=30)
        assert_acknowledged_writes_kept(data, acks)
        found_kinds |= assert_consistent(data)
        server = started(data, *args)
        before, recorded = recorded, sum(v["requests"] for v in httpx.get(
            f"{server.url}/api/models/crashy/usage").json()["versions"])
        assert recorded - before >= workload.flushed, \
            f"usage lost: {recorded - before} recorded of {workload.flushed} acked before a flush"
        served += len(acked)
        checked += workload.flushed
    server.stop()
    assert served > KILLS  # the workload did run between the kills
    assert checked > 0  # and usage was checked against what the server had written
    assert min(acks.writes["upload"], acks.writes["alias"], acks.writes["cleanup"]) > KILLS / 10, \
        acks.writes  # and its writes went through
    assert found_kinds <= {"temp_file", "orphan_blob"}


def started(data: Path, *args: str) -> ServerProcess:
    """A server whose model processes have started. They start with the first upload's check,
    which waits a second for the fork server's imports and would hold up the workload: an
    upload of another model (each time a new one) has them started before it begins."""
    server = ServerProcess(data, *args)
    n = len(list(data.parent.glob("warm-up-*.onnx")))
    warm_up = offset_model(data.parent / f"warm-up-{n}.onnx", -1.0 - n)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert push(client, "warm-up", warm_up).status_code == 201
        assert client.get("/api/status").json()["model_processes"]["state"] == "ready"
    return server


def assert_acknowledged_writes_kept(data: Path, acks: Acks) -> None:
    """Every acknowledged upload is registered with its digest, its blob hashes to it, and
    production is where the last acknowledged move put it (or where an unanswered move was
    taking it); read straight from the database and the files."""
    with sqlite3.connect(data / "registry.db") as db:
        versions = dict(db.execute("SELECT v.number, v.sha256 FROM versions v JOIN models m "
                                   "ON m.id = v.model_id WHERE m.name = 'crashy'").fetchall())
        production = db.execute("SELECT v.number FROM aliases a JOIN versions v ON "
                                "v.id = a.version_id WHERE a.name = 'production'").fetchone()[0]
    for number, sha256 in list(acks.versions.items()):
        if number not in versions:
            assert acks.cleanup_in_flight, f"acknowledged version {number} is gone"
            del acks.versions[number]  # purged by the cleanup the kill cut short
            continue
        assert versions[number] == sha256
    for sha256 in versions.values():
        blob = data / "store" / "sha256" / sha256[:2] / sha256
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha256
    assert production in (acks.production, acks.alias_in_flight)
    acks.production, acks.alias_in_flight, acks.cleanup_in_flight = production, None, False


def assert_consistent(data: Path) -> set[str]:
    """What doctor found on the dead server's data (only repairable problems are allowed); it
    repairs them, as an operator would."""
    registry = Registry.from_url(f"sqlite:///{data / 'registry.db'}")
    try:
        store = LocalStore(data / "store")
        problems = doctor.examine(registry, store)
        assert [p for p in problems if not p.repairable] == [], problems
        doctor.repair(store, registry, problems)
        for model in registry.list_models():
            numbers = {v.number for v in model.versions}
            assert set(model.aliases.values()) <= numbers
    finally:
        registry.close()
    return {p.kind for p in problems}
