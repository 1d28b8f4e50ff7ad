"""Isolated serving overhead: the same scikit-learn models in-process and in a model process.

Starts the real server twice, side by side (``--isolate none`` and ``--isolate all``), uploads
the iris logistic regression and a 100-tree random forest to each as skops files without their
compiled twins (so scikit-learn serves both), then measures with wrk (1 thread; one JSON row
per request): p50 latency at concurrency 1 and throughput at concurrency 4. Each server, with
its model processes, runs on the first core and wrk on the last, so both configurations get
one core and the isolated path pays for its extra process there. The two servers alternate,
--reps times, so that host drift hits both; medians are reported with the isolated path's added
p50 and its throughput ratio. At concurrency 4 it also reads the CPU time the server and its
model processes spent per request (from /proc), which shows where the isolated path's cost lies:
a model process spends more per call than the same model does in a loop, its caches cold after
the server ran. Also times the upload of the iris skops file (its check runs in a
model process).

Appends the points to bench/results/isolation.jsonl.

    .venv/bin/python bench/isolation.py [--reps 3] [--duration 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import peers_env
from peers_systems import descendants, stat_ticks
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from model_manager.demo import train_iris, write_skops

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.support import ServerProcess, push  # noqa: E402

LUA = HERE / "v2.lua"
BODY = json.dumps({"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4],
                               "data": [[5.1, 3.5, 1.4, 0.2]]}]}).encode()
MODES = ("none", "all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    args = parser.parse_args()
    peers_env.ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="bench-isolation-"))
    x, y = load_iris(return_X_y=True)
    files = {"logreg": write_skops(train_iris(), work / "logreg.skops"),
             "forest": write_skops(RandomForestClassifier(100, random_state=0).fit(x, y),
                                   work / "forest.skops")}
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})  # the servers, and their model processes, inherit it
    try:
        servers = {mode: ServerProcess(work / f"var-{mode}", "--isolate", mode) for mode in MODES}
    finally:
        os.sched_setaffinity(0, cores)
    points: list[dict] = []
    try:
        uploads = {mode: upload_times(servers[mode].url, files) for mode in MODES}
        body = work / "body.json"
        body.write_bytes(BODY)
        for mode in MODES:  # warm: the model is loaded and its cost known
            for model in files:
                wrk(servers[mode].url, model, body, 1, 2)
        for rep in range(args.reps):
            for model in files:
                for mode in MODES:
                    c1 = wrk(servers[mode].url, model, body, 1, args.duration)
                    pid = servers[mode].process.pid
                    before = stat_ticks(pid), sum(map(stat_ticks, descendants(pid)))
                    c4 = wrk(servers[mode].url, model, body, 4, args.duration)
                    after = stat_ticks(pid), sum(map(stat_ticks, descendants(pid)))
                    per_request = 1e6 / os.sysconf("SC_CLK_TCK") / (c4["rps"] * args.duration)
                    points.append({"isolate": mode, "model": model, "rep": rep,
                                   "p50_us_c1": c1["p50_us"], "p99_us_c1": c1["p99_us"],
                                   "rps_c1": c1["rps"], "rps_c4": c4["rps"],
                                   "server_cpu_us_c4": (after[0] - before[0]) * per_request,
                                   "models_cpu_us_c4": (after[1] - before[1]) * per_request,
                                   "errors": c1["errors"] + c4["errors"]})
                    print(json.dumps(points[-1]), flush=True)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(points, uploads)


def upload_times(url: str, files: dict[str, Path]) -> list[float]:
    with httpx.Client(base_url=url, timeout=60) as client:
        for name, path in files.items():
            assert push(client, name, path, compile="false").status_code == 201
        times = []
        for i in range(5):
            started = time.perf_counter()
            assert push(client, f"upload-{i}", files["logreg"]).status_code == 201
            times.append(time.perf_counter() - started)
        for name in files:  # load both before measuring
            request = json.loads(BODY)
            assert client.post(f"/v2/models/{name}/infer", json=request).status_code == 200
    return times


def wrk(url: str, model: str, body: Path, connections: int, seconds: int) -> dict[str, float]:
    env = {**os.environ, "V2_BODY_FILE": str(body), "V2_CONTENT_TYPE": "application/json",
           "V2_HEADER_LENGTH": ""}
    last = str(max(os.sched_getaffinity(0)))
    out = subprocess.run(["taskset", "-c", last, "wrk", "-t1", f"-c{connections}",
                          f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA),
                          f"{url}/v2/models/{model}/infer"],
                         capture_output=True, text=True, env=env, check=True)
    result = json.loads(next(line for line in out.stdout.splitlines()
                             if line.startswith("RESULT "))[len("RESULT "):])
    return {"rps": result["rps"], "p50_us": result["p50_ms"] * 1000,
            "p99_us": result["p99_ms"] * 1000, "errors": result["errors"]}


def report(points: list[dict], uploads: dict[str, list[float]]) -> None:
    def median(mode: str, model: str, key: str) -> float:
        return statistics.median(p[key] for p in points
                                 if p["isolate"] == mode and p["model"] == model)

    print(f"\n{'model':>7} {'isolate':>8} {'p50 us c=1':>11} {'p99 us c=1':>11} "
          f"{'req/s c=4':>10} {'CPU us/req c=4: server':>23} {'model processes':>16}")
    for model in ("logreg", "forest"):
        for mode in MODES:
            print(f"{model:>7} {mode:>8} {median(mode, model, 'p50_us_c1'):>11.0f} "
                  f"{median(mode, model, 'p99_us_c1'):>11.0f} "
                  f"{median(mode, model, 'rps_c4'):>10.0f} "
                  f"{median(mode, model, 'server_cpu_us_c4'):>23.0f} "
                  f"{median(mode, model, 'models_cpu_us_c4'):>16.0f}")
        added = median("all", model, "p50_us_c1") - median("none", model, "p50_us_c1")
        ratio = median("all", model, "rps_c4") / median("none", model, "rps_c4")
        print(f"{model:>7} isolated: {added:+.0f} us p50 at c=1, {ratio:.2f}x req/s at c=4")
    for mode in MODES:
        times = uploads[mode]
        print(f"isolate={mode} upload of iris.skops: median "
              f"{statistics.median(times) * 1000:.0f} ms (first {times[0] * 1000:.0f} ms)")
    print(f"errors: {sum(p['errors'] for p in points)}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    with open(results / "isolation.jsonl", "a") as f:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        for point in points:
            f.write(json.dumps({"at": stamp, **point}) + "\n")


if __name__ == "__main__":
    main()
