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
    sent = 1
    for _ in range(10):  # on a fast machine the request may end before it is seen
        answers.clear()
        sent += 1
        in_flight = threading.Thread(target=lambda: answers.append(
            httpx.post(f"{server.url}/v2/models/slow/infer", json=body, timeout=60).status_code))
        in_flight.start()
        while not answers and not any(
                e["in_flight"] for e in httpx.get(f"{server.url}/api/cache").json()["loaded"]):
            time.sleep(0.01)
        if not answers:
            break
        in_flight.join()
    assert not answers, "the request was never seen in flight"
    assert server.stop(signal.SIGTERM) == 0
    in_flight.join()
    assert answers == [200]
    restarted = ServerProcess(data)
    try:
        usage = httpx.get(f"{restarted.url}/api/models/slow/usage").json()["versions"][0]
    finally:
        restarted.stop()
    assert usage["requests"] == sent  # all counted: the shutdown flushed them
