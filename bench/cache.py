"""Model cache benchmark: many models, a budget that holds a quarter of them, skewed traffic.

40 ONNX models of ~20 MB, Zipf-distributed requests from 8 concurrent clients, against the real
server twice: with a budget that holds about 10 models, and with an unlimited budget (everything
stays loaded, as servers that preload their whole repository do). Prints hit rate, loads,
evictions, p50/p99 latency and peak RSS for both, and appends them as JSON lines to
bench/results/cache.jsonl so runs can be compared.

    .venv/bin/python bench/cache.py [--requests 4000] [--models 40] [--model-mb 20]
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
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.onnx_models import weights_model  # noqa: E402
from tests.support import ServerProcess  # noqa: E402

CLIENTS = 8
ZIPF_S = 1.1


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name)


def proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def zipf_choices(n_models: int, n_requests: int, seed: int) -> list[int]:
    weights = 1 / np.arange(1, n_models + 1) ** ZIPF_S
    rng = np.random.default_rng(seed)
    return list(rng.choice(n_models, size=n_requests, p=weights / weights.sum()))


def pin_to_core(pid: int, core: int) -> None:
    if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        subprocess.run(["taskset", "-pc", str(core), str(pid)], capture_output=True, check=False)


def run(label: str, budget: str, model: Path, n_models: int, n_requests: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="mm-bench-") as tmp:
        server = ServerProcess(Path(tmp) / "var", "--memory-budget", budget, "--load-wait", "60s",
                               "--log-level", "warning")
        pin_to_core(server.process.pid, 0)
        pin_to_core(os.getpid(), 1)
        try:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                for i in range(n_models):
                    with open(model, "rb") as f:
                        client.post(f"/api/models/m{i:02d}/versions",
                                    files={"file": ("m.onnx", f)}).raise_for_status()
            idle_rss = proc_status(server.process.pid, "VmRSS")
            Path(f"/proc/{server.process.pid}/clear_refs").write_text("5")  # reset VmHWM
            paths = [f"/v2/models/m{i:02d}/infer" for i in zipf_choices(n_models, n_requests, seed=1)]
            latencies, errors = drive(server.url, paths, IDX_BODY)
            loads = metric(server.url, "model_manager_loads_total")
            evictions = metric(server.url, "model_manager_evictions_total")
            peak_rss = proc_status(server.process.pid, "VmHWM")
        finally:
            server.stop()
    ms = sorted(x * 1000 for x in latencies)
    return {"label": label, "budget": budget, "models": n_models, "requests": n_requests,
            "errors": errors, "hit_rate": 1 - loads / n_requests, "loads": int(loads),
            "evictions": int(evictions), "p50_ms": statistics.median(ms),
            "p99_ms": ms[int(len(ms) * 0.99) - 1], "idle_rss_mb": idle_rss / 1e6,
            "peak_rss_mb": peak_rss / 1e6}


IDX_BODY = {"inputs": [{"name": "idx", "datatype": "INT64", "shape": [1], "data": [7]}]}


def drive(url: str, paths: list[str], body: dict[str, object],
          clients: int = CLIENTS) -> tuple[list[float], int]:
    """POST ``body`` to each path in turn from ``clients`` threads; per-request latency and
    error count."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    queue = iter(paths)

    def client() -> None:
        nonlocal errors
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                with lock:
                    path = next(queue, None)
                if path is None:
                    return
                started = time.perf_counter()
                ok = http.post(path, json=body).status_code == 200
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors += not ok

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--models", type=int, default=40)
    parser.add_argument("--model-mb", type=float, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mm-bench-model-") as tmp:
        model = weights_model(Path(tmp) / "table.onnx", args.model_mb)
        holds_ten = int(10.5 * args.model_mb * 1e6)
        rows = [run("budget for 10", str(holds_ten), model, args.models, args.requests),
                run("unlimited", "1TB", model, args.models, args.requests)]
    print_table(rows)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(results / "cache.jsonl", "a") as out:
        for row in rows:
            out.write(json.dumps({"at": stamp, **row}) + "\n")


def print_table(rows: list[dict[str, object]]) -> None:
    columns = ["label", "requests", "errors", "hit_rate", "loads", "evictions", "p50_ms",
               "p99_ms", "idle_rss_mb", "peak_rss_mb"]
    cells = [[f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in columns]
             for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    limited, unlimited = rows
    print(f"\npeak RSS: {limited['peak_rss_mb']:.0f} MB with the budget vs "
          f"{unlimited['peak_rss_mb']:.0f} MB unlimited "
          f"({float(limited['peak_rss_mb']) / float(unlimited['peak_rss_mb']):.2f}x); "
          f"p50 {float(limited['p50_ms']) / float(unlimited['p50_ms']):.2f}x, "
          f"p99 {float(limited['p99_ms']) / float(unlimited['p99_ms']):.2f}x")


if __name__ == "__main__":
    main()
