"""SIGKILL at random moments of uploads, alias changes, cleanups and usage flushes, many times.

After every kill the data the server left must hold together: every version's blob is in the
store with its digest, every alias names an existing version, a leftover temp file or orphan
blob is found by ``doctor`` (and repaired), and usage is at most about a flush interval behind
what clients were told.
"""

from __future__ import annotations

import os
import random
import signal
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

KILLS = int(os.environ.get("MODEL_MANAGER_TEST_KILLS", "50"))
"""50 in `make test`; `make crash` runs 200."""
FLUSH = 0.2
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]}


class Workload(threading.Thread):
    """Uploads, alias moves, cleanups and predictions until the server dies under it."""

    def __init__(self, url: str, models: Path, rng: random.Random, acked: list[float]) -> None:
        super().__init__(daemon=True)
        self.url, self.models, self.rng, self.acked = url, models, rng, acked

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
            push(client, "crashy", self.models / f"m{self.rng.randrange(40)}.onnx")
        elif roll < 0.3:
            versions = client.get("/api/models/crashy").json()["versions"]
            live = [v["version"] for v in versions if not v["archived"]]
            client.put("/api/models/crashy/aliases/production", json={"version": self.rng.choice(live)})
        elif roll < 0.35:
            client.post("/api/cleanup", json={"dry_run": False, "never_used_grace": "0s",
                                              "purge_after": "0s"})
        else:
            if client.post("/v2/models/crashy/infer", json=BODY).status_code == 200:
                self.acked.append(time.monotonic())


@pytest.mark.timeout(max(600, KILLS * 6))
def test_the_data_holds_together_after_every_kill(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for i in range(40):
        offset_model(models / f"m{i}.onnx", float(i))
    data, rng, acked, served = tmp_path / "var", random.Random(1), [], 0
    args = ("--usage-flush-interval", f"{FLUSH}s")
    server = ServerProcess(data, *args)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        push(client, "crashy", models / "m0.onnx")
        client.put("/api/models/crashy/aliases/production", json={"version": 1})
    found_kinds: set[str] = set()
    recorded = 0
    for _ in range(KILLS):
        acked.clear()
        workload = Workload(server.url, models, rng, acked)
        workload.start()
        time.sleep(rng.uniform(0.1, 0.6))
        killed_at = time.monotonic()
        server.stop(signal.SIGKILL)
        workload.join(timeout=30)
        found_kinds |= assert_consistent(data)
        server = ServerProcess(data, *args)
        before, recorded = recorded, sum(v["requests"] for v in httpx.get(
            f"{server.url}/api/models/crashy/usage").json()["versions"])
        surely_flushed = sum(1 for at in acked if at < killed_at - 2 * FLUSH - 0.2)
        assert recorded - before >= surely_flushed, \
            f"usage lost: {recorded - before} recorded of {surely_flushed} acked before the last flush"
        served += len(acked)
    server.stop()
    assert served > KILLS  # the workload did run between the kills
    assert found_kinds <= {"temp_file", "orphan_blob"}


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
