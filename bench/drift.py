"""Drift tracking's cost on the hot path: the iris logistic regression (compiled to ONNX) served
by two servers side by side, one profiling live inputs and outputs for drift (the default) and
one with ``--no-drift``.

Both servers run on the first core and wrk on the last (1 thread, 8 connections, one JSON row
per request); they alternate --reps times, each first every other time, so that host drift
hits both alike. The tracking server's
baseline (its first 1,000 rows) is complete before the measured runs, so its live profile is
being binned throughout. Reports median p50, p99 and req/s per server and the ratios; appends
the points to bench/results/drift.jsonl.

    .venv/bin/python bench/drift.py [--reps 3] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import peers_env
from isolation import BODY, wrk

from model_manager.demo import train_iris, write_skops

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.support import ServerProcess, eventually, push  # noqa: E402

MODES = {"drift": (), "no-drift": ("--no-drift",)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    peers_env.ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    model = write_skops(train_iris(), work / "logreg.skops")
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})  # the servers inherit the first core
    try:
        servers = {mode: ServerProcess(work / f"var-{mode}", *flags)
                   for mode, flags in MODES.items()}
    finally:
        os.sched_setaffinity(0, cores)
    body = work / "body.json"
    body.write_bytes(BODY)
    points: list[dict] = []
    try:
        for server in servers.values():
            with httpx.Client(base_url=server.url, timeout=60) as client:
                assert push(client, "logreg", model).status_code == 201
        for server in servers.values():  # warm; the tracking server completes its baseline
            wrk(server.url, "logreg", body, 8, 2)
        tracked = servers["drift"].url

        def baseline_done() -> bool:
            report = httpx.get(f"{tracked}/api/models/logreg/drift").json()["versions"][0]
            return report["reference"] is not None

        for _ in range(20):  # 256 requests a second are profiled: a few seconds of traffic
            if baseline_done():
                break
            wrk(tracked, "logreg", body, 8, 2)
        eventually(baseline_done, what="the drift baseline")
        for rep in range(args.reps):
            order = list(servers.items())
            for mode, server in order if rep % 2 == 0 else order[::-1]:  # neither always first
                result = wrk(server.url, "logreg", body, 8, args.duration)
                points.append({"mode": mode, "rep": rep, **result})
                print(json.dumps(points[-1]), flush=True)
        live = httpx.get(f"{tracked}/api/models/logreg/drift").json()["versions"][0]
        print(f"tracking server: {live['live_rows']} live rows in the window, "
              f"reference {live['reference']}")
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(points)


def report(points: list[dict]) -> None:
    def median(mode: str, key: str) -> float:
        return statistics.median(p[key] for p in points if p["mode"] == mode)

    print(f"\n{'mode':>9} {'p50 us':>8} {'p99 us':>8} {'req/s':>8}")
    for mode in MODES:
        print(f"{mode:>9} {median(mode, 'p50_us'):>8.0f} {median(mode, 'p99_us'):>8.0f} "
              f"{median(mode, 'rps'):>8.0f}")
    p50 = median("drift", "p50_us") / median("no-drift", "p50_us")
    rps = median("drift", "rps") / median("no-drift", "rps")
    print(f"drift tracking: {p50:.3f}x p50, {rps:.3f}x req/s; "
          f"errors: {sum(p['errors'] for p in points)}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    with open(results / "drift.jsonl", "a") as f:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        for point in points:
            f.write(json.dumps({"at": stamp, **point}) + "\n")


if __name__ == "__main__":
    main()
