"""``serve --workers 1`` against ``--workers 2``: throughput, p99 and the process tree's memory.

Throughput: a LogisticRegression (20 FP64 features, served through its compiled ONNX twin), one
JSON row per request, closed loop with wrk (1 thread, 64 connections) for --duration seconds,
--reps times, the configurations alternating so that host drift hits them all. wrk is pinned to
the last core. The servers are not pinned (they may use every core, sharing the last with wrk),
except "1@core0": one worker pinned to the first core, the best a single process does here (an
unpinned one loses time to its event loop and inference threads contending for the GIL across
cores).

Memory: 21 such models, one hot (under load) and 20 touched once each; the summed VmRSS and PSS
of the server's process tree (supervisor, workers, their fork servers) after the walk.

Prints medians and the ratio workers 2 / workers 1; appends the points to
bench/results/workers.jsonl.

    .venv/bin/python bench/workers.py [--reps 3] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import peers_env
import skops.io as sio
from peers_systems import descendants
from sklearn.linear_model import LogisticRegression

HERE = Path(__file__).parent
CLI = Path(os.environ.get("VIRTUAL_ENV", HERE.parent / ".venv")) / "bin" / "model-manager"
LUA = HERE / "v2.lua"
ROW = np.random.default_rng(0).random(20).tolist()
BODY = json.dumps({"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 20],
                               "data": ROW}]}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    peers_env.ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    try:
        model = train(work / "logreg.skops")
        points = []
        for rep in range(args.reps):
            for workers, pin in ((1, False), (1, True), (2, False)):
                with Served(work / f"w{workers}{pin}-{rep}", workers, pin) as server:
                    points.append({"workers": label(workers, pin), "rep": rep,
                                   **server.throughput(model, args.duration)})
                    print(json.dumps(points[-1]), flush=True)
        memory = []
        for workers in (1, 2):
            with Served(work / f"mem{workers}", workers) as server:
                memory.append({"workers": workers, **server.memory_walk(model)})
                print(json.dumps(memory[-1]), flush=True)
        report(points, memory)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def train(path: Path) -> Path:
    rng = np.random.default_rng(1)
    x = rng.random((500, 20))
    sio.dump(LogisticRegression(max_iter=500).fit(x, (x[:, 0] > 0.5).astype(int)), path)
    return path


def label(workers: int, pin: bool) -> str:
    return f"{workers}@core0" if pin else str(workers)


class Served:
    def __init__(self, data: Path, workers: int, pin: bool = False) -> None:
        self.workers = workers
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        data.mkdir(parents=True)
        self.log = open(data / "server.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [*(["taskset", "-c", "0"] if pin else []), str(CLI), "serve", "--port", str(self.port),
             "--data-dir", str(data / "var"),
             *([] if workers == 1 else ["--workers", str(workers)]),
             "--log-level", "warning"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Served:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server not ready")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(60)
        self.log.close()

    def push(self, name: str, model: Path) -> None:
        with open(model, "rb") as f:
            answer = httpx.post(f"{self.url}/api/models/{name}/versions",
                                files={"file": (model.name, f)}, timeout=120)
        answer.raise_for_status()

    def throughput(self, model: Path, seconds: int) -> dict[str, float]:
        self.push("logreg", model)
        wait_processes_ready(self.url)
        for _ in range(200):  # every worker loads and warms the model
            with httpx.Client(base_url=self.url) as fresh:
                fresh.post("/v2/models/logreg/infer", content=BODY).raise_for_status()
        wrk(self.url, 64, 3)
        return wrk(self.url, 64, seconds)

    def memory_walk(self, model: Path) -> dict[str, float]:
        for i in range(21):
            self.push(f"m{i}", model)
        wait_processes_ready(self.url)
        wrk(self.url, 64, 5, "m0")  # the hot one, in every worker
        for i in range(1, 21):  # the cold ones, once each
            httpx.post(f"{self.url}/v2/models/m{i}/infer", content=BODY).raise_for_status()
        time.sleep(1)
        rss = pss = 0
        tree = [self.process.pid, *descendants(self.process.pid)]
        for pid in tree:
            rss += status_kib(pid, "VmRSS:")
            pss += rollup_kib(pid, "Pss:")
        return {"tree_rss_mib": round(rss / 1024, 1), "tree_pss_mib": round(pss / 1024, 1),
                "processes": len(tree)}


def wait_processes_ready(url: str) -> None:
    while httpx.get(f"{url}/api/status").json()["model_processes"]["state"] == "starting":
        time.sleep(0.2)


def wrk(url: str, connections: int, seconds: int, model: str = "logreg") -> dict[str, float]:
    folder = Path(tempfile.mkdtemp())
    body = folder / "body.json"
    body.write_bytes(BODY)
    env = {**os.environ, "V2_BODY_FILE": str(body), "V2_CONTENT_TYPE": "application/json",
           "V2_HEADER_LENGTH": ""}
    last = str(len(os.sched_getaffinity(0)) - 1)
    out = subprocess.run(["taskset", "-c", last, "wrk", "-t1", f"-c{connections}",
                          f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA),
                          f"{url}/v2/models/{model}/infer"],
                         capture_output=True, text=True, env=env, check=True)
    shutil.rmtree(folder)
    result = json.loads(next(line for line in out.stdout.splitlines()
                             if line.startswith("RESULT "))[len("RESULT "):])
    return {"rps": result["rps"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
            "errors": result["errors"]}


def status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rollup_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def report(points: list[dict], memory: list[dict]) -> None:
    def median(workers: str, key: str) -> float:
        return statistics.median(p[key] for p in points if p["workers"] == workers)

    print(f"\n{'workers':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for workers in ("1", "1@core0", "2"):
        print(f"{workers:>8} {median(workers, 'rps'):>9.0f} {median(workers, 'p50_ms'):>8.2f} "
              f"{median(workers, 'p99_ms'):>8.2f}")
    for base in ("1", "1@core0"):
        print(f"ratio workers 2 / workers {base}: {median('2', 'rps') / median(base, 'rps'):.2f}x "
              f"req/s, {median('2', 'p99_ms') / median(base, 'p99_ms'):.2f}x p99")
    for row in memory:
        print(f"workers {row['workers']}: process tree {row['tree_rss_mib']} MiB RSS, "
              f"{row['tree_pss_mib']} MiB PSS in {row['processes']} processes "
              "(1 hot + 20 cold logreg models)")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    with open(results / "workers.jsonl", "a") as f:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        for point in [*points, *memory]:
            f.write(json.dumps({"at": stamp, **point}) + "\n")


if __name__ == "__main__":
    main()
