"""Isolated serving overhead: the same scikit-learn models in-process and in a model process.

Starts the real server twice (``--isolate none`` and ``--isolate all``), uploads the iris
logistic regression and a 100-tree random forest as skops files without their compiled twins
(so scikit-learn serves both), then measures p50 latency at concurrency 1 and throughput at
concurrency 4 for each. Also times the upload of the iris skops file (its check runs in a model
process).

    .venv/bin/python bench/isolation.py [--requests 2000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from tests.support import ServerProcess, push

from model_manager.demo import train_iris, write_skops


def body(rows: list[list[float]]) -> dict[str, object]:
    return {"inputs": [{"name": "input", "datatype": "FP64", "shape": [len(rows), 4],
                        "data": rows}]}


def p50_us(client: httpx.Client, model: str, requests: int) -> float:
    request = body([[5.1, 3.5, 1.4, 0.2]])
    for _ in range(100):
        client.post(f"/v2/models/{model}/infer", json=request)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        assert client.post(f"/v2/models/{model}/infer", json=request).status_code == 200
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def throughput(url: str, model: str, seconds: float, clients: int = 4) -> float:
    counts = [0] * clients
    deadline = time.monotonic() + seconds
    request = body([[5.1, 3.5, 1.4, 0.2]])

    def run(i: int) -> None:
        with httpx.Client(base_url=url) as client:
            while time.monotonic() < deadline:
                assert client.post(f"/v2/models/{model}/infer", json=request).status_code == 200
                counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    x, y = load_iris(return_X_y=True)
    files = {"logreg": write_skops(train_iris(), folder / "logreg.skops"),
             "forest": write_skops(RandomForestClassifier(100, random_state=0).fit(x, y),
                                   folder / "forest.skops")}
    for mode in ("none", "all"):
        server = ServerProcess(folder / f"var-{mode}", "--isolate", mode)
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                for name, path in files.items():
                    assert push(client, name, path, compile="false").status_code == 201
                uploads = []
                for i in range(5):
                    started = time.perf_counter()
                    assert push(client, f"upload-{i}", files["logreg"]).status_code == 201
                    uploads.append(time.perf_counter() - started)
                for name in files:
                    print(f"isolate={mode} {name}: p50 {p50_us(client, name, args.requests):.0f} us "
                          f"at c=1, {throughput(server.url, name, args.seconds):.0f} req/s at c=4")
                print(f"isolate={mode} upload of iris.skops: median "
                      f"{statistics.median(uploads) * 1000:.0f} ms (first {uploads[0] * 1000:.0f} ms)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
