"""SIGTERM: stop taking connections, finish what is in flight, flush usage, exit 0."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from tests.onnx_models import slow_model
from tests.support import ServerProcess, push


def test_sigterm_finishes_requests_in_flight_and_exits_zero(tmp_path: Path) -> None:
    data = tmp_path / "var"
    server = ServerProcess(data, "--usage-flush-interval", "60s")  # only the shutdown flushes
    rows = np.ones((60, 4), dtype=np.float32)  # a second or so of work
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [60, 4], "data": rows.ravel().tolist()}]}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        push(client, "slow", slow_model(tmp_path / "slow.onnx"))
        assert client.post("/v2/models/slow/infer", json=body).status_code == 200  # loaded, warm
    answers: list[int] = []
    in_flight = threading.Thread(target=lambda: answers.append(
        httpx.post(f"{server.url}/v2/models/slow/infer", json=body, timeout=60).status_code))
    in_flight.start()
    deadline = time.monotonic() + 30
    while not any(e["in_flight"] for e in httpx.get(f"{server.url}/api/cache").json()["loaded"]):
        assert time.monotonic() < deadline and not answers, "the request was never in flight"
        time.sleep(0.01)
    assert server.stop(signal.SIGTERM) == 0
    in_flight.join()
    assert answers == [200]
    restarted = ServerProcess(data)
    try:
        usage = httpx.get(f"{restarted.url}/api/models/slow/usage").json()["versions"][0]
    finally:
        restarted.stop()
    assert usage["requests"] == 2  # both counted: the shutdown flushed them
