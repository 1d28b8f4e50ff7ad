"""Shadow overhead benchmark: what a shadow at sample rate 1.0 costs the served requests.

One server (pinned to core 0) with model "pair": version 1 serves, version 2 is the same model
(the iris classifier as ONNX, so both sides cost the same). 8 concurrent clients (pinned to
core 1) send one-row v2 JSON requests in rounds, alternating between no traffic policy and a
policy that shadows version 2 on every request. Prints the primary's p50/p99 per mode (medians
over rounds), their ratio, and the shadow comparisons and drops the server counted; appends the
result to bench/results/shadow.jsonl.

    .venv/bin/python bench/shadow.py [--rounds 5] [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cache import drive as drive_paths  # noqa: E402
from bench.cache import pin_to_core  # noqa: E402
from tests.support import ServerProcess  # noqa: E402

from model_manager.demo import train_iris, write_onnx  # noqa: E402

CLIENTS = 8
BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                    "data": [5.1, 3.5, 1.4, 0.2]}]}
ROUTED = {"routes": [{"version": 1, "weight": 100}],
          "shadows": [{"version": 2, "sample_rate": 0.0}]}
SHADOWED = {"routes": [{"version": 1, "weight": 100}],
            "shadows": [{"version": 2, "sample_rate": 1.0}]}


def drive(url: str, n_requests: int) -> tuple[list[float], int]:
    """Send ``n_requests`` to the served model from CLIENTS threads."""
    return drive_paths(url, ["/v2/models/pair/infer"] * n_requests, BODY, CLIENTS)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    modes: dict[str, list[tuple[float, float, int]]] = {"no shadow": [], "shadow 0": [],
                                                        "shadow 1.0": []}
    with tempfile.TemporaryDirectory(prefix="mm-bench-shadow-") as tmp:
        model = write_onnx(train_iris(), Path(tmp) / "iris.onnx", 4)
        server = ServerProcess(Path(tmp) / "var", "--log-level", "warning")
        pin_to_core(server.process.pid, 0)
        pin_to_core(0, 1)  # this process
        try:
            with httpx.Client(base_url=server.url, timeout=60) as admin:
                for _ in range(2):
                    with open(model, "rb") as f:
                        admin.post("/api/models/pair/versions",
                                   files={"file": ("iris.onnx", f)}).raise_for_status()
                admin.put("/api/models/pair/aliases/production", json={"version": 1})
                drive(server.url, 500)  # warm up
                for _ in range(args.rounds):
                    for mode in modes:
                        if mode == "no shadow":
                            admin.delete("/api/models/pair/traffic")
                        else:
                            admin.put("/api/models/pair/traffic",
                                      json=ROUTED if mode == "shadow 0" else SHADOWED)
                        latencies, errors = drive(server.url, args.requests)
                        modes[mode].append((percentile(latencies, 0.5),
                                            percentile(latencies, 0.99), errors))
                time.sleep(1.0)  # let the shadow queue drain
                pairs = admin.get("/api/models/pair/shadow").json()["pairs"]
        finally:
            server.stop()
    row = {"clients": CLIENTS, "rounds": args.rounds, "requests_per_round": args.requests}
    for mode, results in modes.items():
        key = mode.replace(" ", "_").replace(".", "")
        row[f"{key}_p50_ms"] = statistics.median(r[0] for r in results)
        row[f"{key}_p99_ms"] = statistics.median(r[1] for r in results)
        row[f"{key}_errors"] = sum(r[2] for r in results)
    row["p50_ratio"] = row["shadow_10_p50_ms"] / row["no_shadow_p50_ms"]
    row["shadow_pairs"] = sum(p["pairs"] for p in pairs)
    row["shadow_dropped"] = sum(p["dropped"] for p in pairs)
    row["shadow_agreement"] = pairs[0]["agreement"] if pairs else None
    for key, value in row.items():
        print(f"{key:24} {value:.3f}" if isinstance(value, float) else f"{key:24} {value}")
    print(f"\nprimary p50 with a shadow at rate 1.0: {row['p50_ratio']:.3f}x of without "
          f"(goal: at most 1.10x)")
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    with open(results_dir / "shadow.jsonl", "a") as out:
        out.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **row}) + "\n")


if __name__ == "__main__":
    main()
