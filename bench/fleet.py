"""Three replicas behind HAProxy: consistent hashing on the model name against round-robin.

deploy/fleet/run-local.sh starts the replicas (one SQLite registry, one store folder, the same
--memory-budget each) and HAProxy with the shipped config, then again with the model backend's
`balance` line replaced by `roundrobin`. Both get the same Zipf trace (s=1.1) over --models
lookup tables of --model-mb MB each, from --clients closed-loop clients. Reported per policy:
the fleet's loaded bytes after the trace (the sum of every replica's `used_bytes`), loads (the
sum of `model_manager_loads_total`), the hit rate (1 - loads / requests), errors, p50 and p99.
Appends the rows to bench/results/fleet.jsonl.

    .venv/bin/python bench/fleet.py [--requests 1500] [--models 30] [--budget 1GiB]
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
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fleet import LocalFleet, drive, zipf_trace  # noqa: E402
from tests.onnx_models import weights_model  # noqa: E402
from tests.support import push  # noqa: E402

LOOKUP = {"inputs": [{"name": "idx", "datatype": "INT64", "shape": [1], "data": [0]}]}


def loads(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "model_manager_loads" for sample in family.samples
               if sample.name == "model_manager_loads_total")


def run(label: str, balance: str | None, args: argparse.Namespace, files: list[Path],
        trace: list[str], work: Path) -> dict[str, object]:
    with LocalFleet(work / label, 3, budget=args.budget, balance=balance) as fleet:
        with httpx.Client(base_url=fleet.url, timeout=120) as admin:
            for path in files:
                push(admin, path.stem, path).raise_for_status()
        started = time.perf_counter()
        answers = drive(fleet.url, trace, clients=args.clients, body=lambda _: LOOKUP)
        elapsed = time.perf_counter() - started
        loaded = sum(r.used_bytes() for r in fleet.replicas)
        loaded_total = sum(loads(r.url) for r in fleet.replicas)
        copies = sum(len(r.loaded()) for r in fleet.replicas)
    ms = sorted(a.seconds * 1000 for a in answers if a.status == 200)
    return {"label": label, "requests": len(answers),
            "errors": sum(a.status != 200 for a in answers),
            "distinct_models": len(set(trace)), "copies_loaded": copies,
            "loaded_mb": round(loaded / 2**20, 1), "loads": int(loaded_total),
            "hit_rate": round(1 - loaded_total / len(answers), 3),
            "p50_ms": round(statistics.median(ms), 1), "p99_ms": round(ms[int(0.99 * len(ms))], 1),
            "req_per_s": round(len(answers) / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--models", type=int, default=30)
    parser.add_argument("--model-mb", type=float, default=10)
    parser.add_argument("--budget", default="1GiB")
    parser.add_argument("--clients", type=int, default=6)
    args = parser.parse_args()
    names = [f"table{i:02d}" for i in range(args.models)]
    trace = zipf_trace(names, args.requests, s=1.1, seed=1)
    with tempfile.TemporaryDirectory(prefix="mm-bench-fleet-") as tmp:
        work = Path(tmp)
        files = [weights_model(work / f"{name}.onnx", args.model_mb, seed=i)
                 for i, name in enumerate(names)]
        rows = [run("consistent-hash", None, args, files, trace, work),
                run("roundrobin", "roundrobin", args, files, trace, work)]
    columns = list(rows[0])
    print("  ".join(f"{c:>15}" for c in columns))
    for row in rows:
        print("  ".join(f"{row[c]!s:>15}" for c in columns))
    ratio = float(rows[0]["loaded_mb"]) / float(rows[1]["loaded_mb"])  # type: ignore[arg-type]
    print(f"loaded bytes, hash / round-robin: {ratio:.2f}")
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(results / "fleet.jsonl", "a") as out:
        for row in rows:
            out.write(json.dumps({"at": stamp, **vars(args), **row}) + "\n")


if __name__ == "__main__":
    main()
