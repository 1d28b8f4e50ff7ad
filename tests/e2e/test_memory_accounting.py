"""The cache's sizes are what models really add to the server's RSS, and the RSS follows the
budget: measured from outside the process, with a real ~50 MB ONNX model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_model_cache import lookup, server_rss
from tests.onnx_models import weights_model
from tests.support import ServerProcess, push

MB = 1_000_000
BUDGET = 300 * MB


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("rss") / "var", "--memory-budget", str(BUDGET))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return weights_model(tmp_path_factory.mktemp("big") / "big.onnx", 50)


def test_accounted_size_is_within_a_quarter_of_the_rss_it_adds(server: ServerProcess,
                                                               big_model: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        push(client, "honest", big_model)
        assert lookup(client, "honest").status_code == 200  # the runtime's first-use costs
        client.post("/v2/repository/models/honest/unload")
        before = server_rss(server)
        assert lookup(client, "honest").status_code == 200
        added = server_rss(server) - before
        accounted = client.get("/api/models/honest/versions/1").json()["loaded_bytes"]
    assert 45 * MB < added < 80 * MB
    assert abs(accounted - added) <= 0.25 * added


def reset_peak_rss(server: ServerProcess) -> None:
    Path(f"/proc/{server.process.pid}/clear_refs").write_text("5")


def peak_rss(server: ServerProcess) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_rss_stays_within_the_budget_over_forty_models(server: ServerProcess,
                                                       big_model: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for _ in range(40):
            assert push(client, "forty", big_model).status_code == 201
        client.post("/v2/repository/models/honest/unload")
        idle = server_rss(server)
        reset_peak_rss(server)  # from here VmHWM is the peak over the forty loads, transients included
        for version in range(1, 41):
            assert lookup(client, "forty", str(version)).status_code == 200
        peak = peak_rss(server)
        loaded = [e for e in client.post("/v2/repository/index", json={"ready": True}).json()
                  if e["name"] == "forty"]
    assert 4 <= len(loaded) <= 6  # ~52 MB each under 300 MB
    assert peak < idle + BUDGET * 1.15
