"""Side by side: our server, MLServer (tuned and as shipped) and a bare ASGI floor, on one core.

Measures closed-loop throughput and latency of V2 (Open Inference Protocol) REST inference on two
small scikit-learn classifiers, one row of 20 FP64 features per request: "logreg"
(LogisticRegression, a fraction of a millisecond in scikit-learn) and "rf100" (a 100-tree
RandomForest, several milliseconds per predict call in scikit-learn).

    ours              model-manager serve (models pushed as skops files, `production` alias set);
                      bodies: v2 JSON and the v2 binary tensor extension; optionally json-label,
                      JSON asking for the label output only (what MLServer computes)
    ours-granian      the same with --http-server granian, when `serve --help` offers it
    ours-sklearn      the same, models pushed with compile=false: served by scikit-learn itself,
                      as MLServer serves them (not run unless named in --systems)
    ours-sklearn-batched  as ours-sklearn, with dynamic batching (32 rows, 2 ms) in the versions'
                      metadata (not run unless named in --systems)
    mlserver-tuned    MLServer 1.7, parallel_workers=0, debug, metrics and gzip off, httptools
    mlserver-default  MLServer 1.7 as shipped (one inference worker process, access log, metrics)
    floor             a raw ASGI app answering a constant V2 response (uvicorn, httptools, uvloop):
                      what any Python server on this core costs before it does any work
    floor-granian     the floor on granian, only beside ours-granian

Our server may serve a scikit-learn model through an ONNX twin it compiled at upload; the output
says, per model, how it was served.

Each server runs alone pinned to core 0 (one BLAS/OpenMP thread); wrk runs pinned to core 1 with
one thread. After readiness and a short warm-up, every model x body x concurrency point is run
for --duration seconds, --reps times, with the repetition as the outer loop so that the reps of
one point are minutes apart. Non-2xx answers count as errors. Peak RSS is VmHWM summed over the
server's process tree. Host speed drifts, so compare systems only within one run.

Prints a table (median over reps) and ours-vs-peer ratios; appends every point as a JSON line to
bench/results/peers.jsonl. The first run builds bench/.peers (venvs, models; a few minutes).

    .venv/bin/python bench/peers.py [--quick] [--systems ours,floor] [--models logreg]
        [--concurrency 1,8,64] [--reps 2] [--duration 10] [--bodies json,binary]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import peers_env
from peers_systems import (
    CLIENT_CPU,
    SERVER_CPU,
    Body,
    PortTaken,
    Server,
    System,
    catalog,
    json_body,
    ours_has_granian,
    pinned,
    prepare_ours,
)

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "peers.jsonl"
LUA = BENCH / "v2.lua"
WARMUP_CONCURRENCY = 8
BODY_KINDS = ("json", "binary", "json-label")
Point = dict[str, Any]


def main() -> None:
    args = parse_args()
    peers_env.ensure_all()
    systems = chosen_systems(args.systems)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(f"run {stamp}: {', '.join(s.name for s in systems)}; models {', '.join(args.models)}; "
          f"bodies {', '.join(args.bodies)}; c={args.concurrency}; {args.reps} rep(s) x "
          f"{args.duration}s; server cpu {SERVER_CPU}, wrk cpu {CLIENT_CPU}"
          + ("" if pinned(SERVER_CPU) else " (NOT pinned: taskset missing or one CPU)"), flush=True)
    points: list[Point] = []
    for system in systems:
        measured = run_system(system, args)
        save(measured, stamp, args)
        points += measured
    if not points:
        raise SystemExit("no system produced a point")
    print_table(points)
    print_ratios(points)
    print(f"\n{len(points)} points appended to {RESULTS}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=names,
                        help="default: all but ours-sklearn (see the module docstring)")
    parser.add_argument("--models", type=names, default=list(peers_env.MODEL_NAMES))
    parser.add_argument("--concurrency", type=numbers, default=[1, 8, 64])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10, help="seconds per point")
    parser.add_argument("--warmup", type=int, default=3, help="seconds per model and body")
    parser.add_argument("--bodies", type=names, default=["json", "binary"],
                        help="json-label (JSON asking for the label output only) and binary (the v2 binary "
                        "tensor extension) are sent to our server only")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 rep, 3 s, 1 s warm-up")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.duration, args.warmup = 1, 3, 1
    unknown = set(args.models) - set(peers_env.MODEL_NAMES) | set(args.bodies) - set(BODY_KINDS)
    if unknown:
        parser.error(f"unknown model or body: {', '.join(sorted(unknown))}")
    return args


def names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def numbers(text: str) -> list[int]:
    return [int(part) for part in names(text)]


def chosen_systems(wanted: list[str] | None) -> list[System]:
    with_granian = ours_has_granian()
    if not with_granian:
        print("`model-manager serve` has no --http-server granian option: skipping ours-granian "
              "(and floor-granian)")
    available = catalog(with_granian)
    unknown = [name for name in wanted or [] if name not in available]
    if unknown:
        raise SystemExit(f"unknown or unavailable system(s) {', '.join(unknown)}; "
                         f"available: {', '.join(available)}")
    return [available[name] for name in wanted] if wanted else [s for s in available.values()
                                                               if s.by_default]


def run_system(system: System, args: argparse.Namespace) -> list[Point]:
    """Start the system, measure every point, stop it; [] (with a message) when it fails."""
    print(f"\n== {system.name} ({system.http})", flush=True)
    try:
        with Server(system) as server:
            return measure_system(server, args)
    except (PortTaken, RuntimeError, OSError, httpx.HTTPError) as exc:
        print(f"  SKIPPED {system.name}: {exc}", flush=True)
        return []


def measure_system(server: Server, args: argparse.Namespace) -> list[Point]:
    system = server.system
    bodies, served = ready_bodies(server, args.models, args.bodies)
    info = {"system": system.name, "http": system.http, "served": served,
            "ready_s": round(time.monotonic() - server.started, 2),
            "versions": peers_env.versions(system.python, system.packages, dict(system.env) or None)}
    if system.kind == "ours":  # the server runs from this checkout: say which code was measured
        info["versions"]["commit"] = checkout_commit()
    print(f"  ready in {info['ready_s']}s; {json.dumps(info['versions'])}", flush=True)
    if served:
        print(f"  served: {json.dumps(served)}", flush=True)
    for model, model_bodies in bodies.items():
        for body in model_bodies:
            run_wrk(server, model, body, WARMUP_CONCURRENCY, args.warmup)
    plan = [(rep, model, body, concurrency) for rep in range(1, args.reps + 1)
            for model, model_bodies in bodies.items() for body in model_bodies
            for concurrency in args.concurrency]
    points = [measure_point(server, info, step, args.duration) for step in plan]
    time.sleep(1)
    memory = server.memory_mib()
    print(f"  memory: idle RSS {memory['idle_rss_mib']:.0f} MiB, peak {memory['peak_rss_mib']:.0f} MiB"
          f" ({memory['procs']} process(es))", flush=True)
    return [{**point, **memory} for point in points]


def checkout_commit() -> str:
    out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=BENCH, capture_output=True,
                         text=True, check=False)
    return out.stdout.strip() or "unknown"


def measure_point(server: Server, info: Point, step: tuple[int, str, Body, int], seconds: int) -> Point:
    rep, model, body, concurrency = step
    point = {**info, "ts": time.strftime("%H:%M:%S"), "model": model, "body": body.kind,
             "concurrency": concurrency, "rep": rep, **run_wrk(server, model, body, concurrency, seconds)}
    print_point(point)
    return point


def ready_bodies(server: Server, models: list[str],
                 kinds: list[str]) -> tuple[dict[str, list[Body]], dict[str, str]]:
    """Wait until the system serves every model; the bodies to send to each, checked once, and
    how our server serves each model."""
    system = server.system
    server.wait_ready(["/v2/health/ready"])
    served: dict[str, str] = {}
    if system.kind == "ours":
        bodies, served = prepare_ours(system, models)
    elif system.kind == "floor":
        bodies = {"floor": [json_body("predict", "FP64")]}
    else:
        bodies = {model: [json_body("predict", "FP64")] for model in models}
    server.wait_ready([f"/v2/models/{model}/ready" for model in bodies])
    bodies = {model: [b for b in found if b.kind in kinds] for model, found in bodies.items()}
    for model, model_bodies in bodies.items():
        for body in model_bodies:
            check_answer(system, model, body)
    return {model: found for model, found in bodies.items() if found}, served


def check_answer(system: System, model: str, body: Body) -> None:
    headers = {"content-type": body.content_type}
    if body.header_length is not None:
        headers["inference-header-content-length"] = str(body.header_length)
    answer = httpx.post(f"{system.url}/v2/models/{model}/infer", content=body.data, headers=headers,
                        timeout=30)
    print(f"  check {model}/{body.kind}: {answer.status_code} {answer.text[:150]}", flush=True)
    if answer.status_code != 200:
        raise RuntimeError(f"{system.name} answered {answer.status_code} to {model}/{body.kind}")


def run_wrk(server: Server, model: str, body: Body, concurrency: int, seconds: int) -> Point:
    """One closed-loop wrk run; wrk's RESULT plus the CPU the server tree and wrk used."""
    body_file = server.system.workdir / f"body-{model}-{body.kind}.bin"
    body_file.write_bytes(body.data)
    env = {**os.environ, "V2_BODY_FILE": str(body_file), "V2_CONTENT_TYPE": body.content_type,
           "V2_HEADER_LENGTH": "" if body.header_length is None else str(body.header_length)}
    command = [*pinned(CLIENT_CPU), "wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout",
               "10s", "-s", str(LUA), f"{server.system.url}/v2/models/{model}/infer"]
    meter = CpuMeter(server)
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    usage = meter.read()
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"wrk printed no RESULT (exit {out.returncode}): {out.stderr[-500:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    # Server CPU per request: stable where req/s drifts with the host (CPU seconds / requests).
    cpu_us = usage.pop("server_cpu_s") / result["requests"] * 1e6 if result["requests"] else 0.0
    return {**result, **usage, "server_cpu_us_per_req": round(cpu_us, 1)}


class CpuMeter:
    """CPU used during one run, in % of one core: by the server tree, by wrk, and by anything
    else on the server's core ("foreign", i.e. noise from neighbours; about +-5 % error)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._started = time.monotonic()
        self._server_ticks = server.cpu_ticks()
        self._core_ticks = core_busy_ticks(SERVER_CPU)
        self._client = resource.getrusage(resource.RUSAGE_CHILDREN)

    def read(self) -> dict[str, int]:
        hz = os.sysconf("SC_CLK_TCK")
        one_pct = hz * (time.monotonic() - self._started) / 100  # ticks in 1 % of the run
        server = self._server.cpu_ticks() - self._server_ticks
        core = core_busy_ticks(SERVER_CPU) - self._core_ticks
        now = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = hz * (now.ru_utime + now.ru_stime - self._client.ru_utime - self._client.ru_stime)
        return {"server_cpu_pct": round(server / one_pct), "server_cpu_s": server / hz,
                "client_cpu_pct": round(client / one_pct),
                "foreign_cpu_pct": round((core - server) / one_pct) if pinned(SERVER_CPU) else -1}


def core_busy_ticks(cpu: str) -> int:
    """user + nice + system + irq + softirq ticks of one core, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0] == f"cpu{cpu}":
            return sum(int(fields[i]) for i in (1, 2, 3, 6, 7))
    return 0


def print_point(p: Point) -> None:
    bad = f"  ERRORS {p['errors']} (first: {p['first_bad'][:80]})" if p["errors"] else ""
    print(f"  rep {p['rep']} {p['model']:<6} {p['body']:<6} c={p['concurrency']:<3} "
          f"{p['rps']:>8.0f} req/s  p50 {p['p50_ms']:7.2f} ms  p99 {p['p99_ms']:7.2f} ms  "
          f"server {p['server_cpu_pct']}% wrk {p['client_cpu_pct']}% foreign {p['foreign_cpu_pct']}%{bad}",
          flush=True)


def save(points: list[Point], stamp: str, args: argparse.Namespace) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    common = {"at": stamp, "duration_s_asked": args.duration, "reps": args.reps,
              "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU, "wrk": peers_env.wrk_version()}
    with open(RESULTS, "a") as out:
        for point in points:
            out.write(json.dumps({**common, **point}) + "\n")


def summarize(points: list[Point]) -> dict[tuple[str, str, str, int], Point]:
    """Median over reps per (system, model, body, concurrency); errors summed."""
    groups: dict[tuple[str, str, str, int], list[Point]] = {}
    for p in points:
        groups.setdefault((p["system"], p["model"], p["body"], p["concurrency"]), []).append(p)
    return {key: {"rps": statistics.median(p["rps"] for p in group),
                  "p50_ms": statistics.median(p["p50_ms"] for p in group),
                  "p99_ms": statistics.median(p["p99_ms"] for p in group),
                  "server_cpu_pct": statistics.median(p["server_cpu_pct"] for p in group),
                  "cpu_us": statistics.median(p["server_cpu_us_per_req"] for p in group),
                  "client_cpu_pct": max(p["client_cpu_pct"] for p in group),
                  "foreign_cpu_pct": max(p["foreign_cpu_pct"] for p in group),
                  "peak_rss_mib": group[0]["peak_rss_mib"], "idle_rss_mib": group[0]["idle_rss_mib"],
                  "errors": sum(p["errors"] for p in group), "reps": len(group)}
            for key, group in groups.items()}


def print_table(points: list[Point]) -> None:
    rows = [[system, model, body, str(c), f"{s['rps']:,.0f}", f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}",
             f"{s['cpu_us']:.0f}", f"{s['server_cpu_pct']:.0f}", f"{s['client_cpu_pct']:.0f}",
             f"{s['foreign_cpu_pct']:.0f}", f"{s['idle_rss_mib']:.0f}",
             f"{s['peak_rss_mib']:.0f}", str(s["errors"]), str(s["reps"])]
            for (system, model, body, c), s in summarize(points).items()]
    print("\nmedian over reps; p50/p99 in ms; cpu us = server tree CPU per request; srv% = server tree"
          "\nCPU, wrk% = wrk CPU (max), foreign% = other processes on the server's core (max; above ~10"
          "\nthe point is disturbed); RSS in MiB")
    print_rows(["system", "model", "body", "conc", "req/s", "p50", "p99", "cpu us", "srv%", "wrk%",
                "foreign%", "idle RSS", "peak RSS", "errors", "reps"], rows)
    https = {p["system"]: p["http"] for p in points}
    print("HTTP: " + "; ".join(f"{system}: {http}" for system, http in https.items()))
    served = {p["system"]: p["served"] for p in points if p["served"]}
    for system, models in served.items():
        print(f"{system} serves " + "; ".join(f"{model} {how}" for model, how in models.items()))


def print_ratios(points: list[Point]) -> None:
    """Ours / peer at each point (JSON and binary bodies vs the peer's JSON); >1 req/s is better."""
    table = summarize(points)
    systems = list(dict.fromkeys(key[0] for key in table))
    for ours in (s for s in systems if s.startswith("ours")):
        for peer in (s for s in systems if not s.startswith("ours")):
            rows = ratio_rows(table, ours, peer)
            if rows:
                vs_floor = "on logreg; us/req = 1e6/req/s difference (CPU per request when saturated)"
                print(f"\n{ours} vs {peer}" + (f" {vs_floor}" if peer.startswith("floor") else ""))
                print_rows(["model", "conc", "body", "req/s ours", "req/s peer", "req/s x", "p99 x",
                            "us/req more", "cpu us ours", "cpu us peer", "cpu x"], rows)


def ratio_rows(table: dict[tuple[str, str, str, int], Point], ours: str, peer: str) -> list[list[str]]:
    rows = []
    for (system, model, body, c), mine in table.items():
        peer_model = "floor" if peer.startswith("floor") else model
        theirs = table.get((peer, peer_model, "json", c))
        if system != ours or theirs is None or (peer_model == "floor" and model != "logreg"):
            continue
        extra_us = 1e6 / mine["rps"] - 1e6 / theirs["rps"] if mine["rps"] and theirs["rps"] else 0
        rows.append([model, str(c), body, f"{mine['rps']:,.0f}", f"{theirs['rps']:,.0f}",
                     f"{mine['rps'] / theirs['rps']:.2f}" if theirs["rps"] else "-",
                     f"{mine['p99_ms'] / theirs['p99_ms']:.2f}" if theirs["p99_ms"] else "-",
                     f"{extra_us:,.0f}", f"{mine['cpu_us']:.0f}", f"{theirs['cpu_us']:.0f}",
                     f"{mine['cpu_us'] / theirs['cpu_us']:.2f}" if theirs["cpu_us"] else "-"])
    return rows


def print_rows(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
