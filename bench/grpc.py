"""gRPC inference side by side: our server and MLServer 1.7 (tuned), plus our REST at one load.

Measures closed-loop throughput and latency of Open Inference Protocol gRPC inference
(`inference.GRPCInferenceService/ModelInfer`) on bench/peers.py's "logreg" (scikit-learn
LogisticRegression, one row of 20 FP64 features per request):

    ours            model-manager serve --grpc-port, logreg pushed and loaded as bench/peers.py
                    does it; gRPC bodies "typed" (the row in fp64_contents) and "raw" (the row's
                    little-endian bytes in raw_input_contents, what tritonclient sends); and v2
                    REST JSON through wrk at the highest concurrency, in the same server process
    mlserver-tuned  MLServer 1.7 tuned as in bench/peers.py (parallel_workers=0, debug, metrics
                    and gzip off, httptools), serving gRPC on its own port; gRPC body "typed"
    grpc-floor      grpc.aio in uvicorn's event loop, as ours runs it, answering every ModelInfer
                    with a constant (bench/grpc_floor_app.py): what a call costs before any codec,
                    routing, checks or model; gRPC body "typed"

gRPC load: h2load (nghttp2) over cleartext HTTP/2, pinned to core 1 with one thread, posting the
same length-prefixed, uncompressed message to the method's path: c connections with --streams
calls in flight on each (default 1, so c calls in flight in all, as wrk's c connections).
Latency percentiles come from h2load's per-request log. The server runs alone on core 0 with one
BLAS/OpenMP thread.

h2load sees HTTP statuses only, and a failed gRPC call is an HTTP 200 with a non-zero
grpc-status trailer, so each point is checked three ways: before it, the very message is sent
once with a gRPC client and the label answered compared with scikit-learn's own; after it, the
DATA bytes h2load received must be whole answers of the checked size (a failed call has none);
and for ours, the model's usage counts must have grown by h2load's calls with no error. A
mismatch counts as errors of the point.

Repetition is the outermost loop: each rep starts every system afresh, so the reps of one point
are minutes apart and the systems alternate. Prints a table (median over reps) and the ratios of
the goals; appends every point as a JSON line to bench/results/grpc.jsonl.

    .venv/bin/python bench/grpc.py [--quick] [--reps 2] [--duration 10] [--concurrency 8,64]
        [--streams 1]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named grpc.py and Python puts its folder first on sys.path, where `import grpc`
# would find it instead of grpcio: the folder goes last.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # noqa: E402
import httpx  # noqa: E402
import joblib  # noqa: E402
import numpy as np  # noqa: E402
import peers_env  # noqa: E402
import tritonclient.grpc as triton  # noqa: E402
from peers import CpuMeter, check_answer, checkout_commit, print_rows, run_wrk  # noqa: E402
from peers_systems import (  # noqa: E402
    CLIENT_CPU,
    SERVER_CPU,
    PortTaken,
    Server,
    System,
    grpc_catalog,
    pinned,
    prepare_ours,
)
from tritonclient.grpc import service_pb2 as pb  # noqa: E402

RESULTS = BENCH / "results" / "grpc.jsonl"
MODEL = "logreg"
METHOD = "/inference.GRPCInferenceService/ModelInfer"
WARMUP_CONCURRENCY = 8
GOAL_RPS, GOAL_P99 = 2.0, 0.5
Point = dict[str, Any]


@dataclass(frozen=True)
class Call:
    """One gRPC body: the serialized ModelInferRequest and the size of a good answer to it."""

    kind: str
    message: bytes
    answer_size: int = 0

    @property
    def framed(self) -> bytes:
        """As on the wire: uncompressed flag, 4-byte big-endian length, message."""
        return b"\0" + len(self.message).to_bytes(4, "big") + self.message


def main() -> None:
    args = parse_args()
    peers_env.ensure_all()
    peers_env.ensure_h2load()
    systems = list(grpc_catalog().values())
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(f"run {stamp}: {', '.join(s.name for s in systems)}; model {MODEL}; c={args.concurrency}; "
          f"{args.streams} stream(s) per connection; {args.reps} rep(s) x {args.duration}s; server cpu "
          f"{SERVER_CPU}, load cpu {CLIENT_CPU}; {peers_env.h2load_version()}, "
          f"{peers_env.wrk_version()}"
          + ("" if pinned(SERVER_CPU) else " (NOT pinned: taskset missing or one CPU)"), flush=True)
    points: list[Point] = []
    for rep in range(1, args.reps + 1):
        for system in systems:
            measured = run_system(system, rep, args)
            save(measured, stamp, args)
            points += measured
    if not points:
        raise SystemExit("no system produced a point")
    print_table(points)
    print_goals(points, max(args.concurrency))
    print(f"\n{len(points)} points appended to {RESULTS}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=numbers, default=[8, 64])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10, help="seconds per point")
    parser.add_argument("--warmup", type=int, default=3, help="seconds per body")
    parser.add_argument("--streams", type=int, default=1,
                        help="gRPC calls in flight per HTTP/2 connection (h2load -m)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 rep, 3 s, 1 s warm-up")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.duration, args.warmup = 1, 3, 1
    return args


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def run_system(system: System, rep: int, args: argparse.Namespace) -> list[Point]:
    """Start the system, measure each of its points once, stop it; [] (with a message) if it fails."""
    print(f"\n== rep {rep}: {system.name} ({system.http}; gRPC on {system.grpc_port})", flush=True)
    try:
        with Server(system) as server:
            return measure_system(server, rep, args)
    except (PortTaken, RuntimeError, OSError, httpx.HTTPError, grpc.RpcError) as exc:
        print(f"  SKIPPED {system.name}: {exc}", flush=True)
        return []


def measure_system(server: Server, rep: int, args: argparse.Namespace) -> list[Point]:
    system = server.system
    server.wait_ready(["/v2/health/ready"])
    calls, rest, served = prepare(server)
    info = {"system": system.name, "http": system.http, "served": served, "rep": rep,
            "ready_s": round(time.monotonic() - server.started, 2),
            "versions": peers_env.versions(system.python, system.packages, dict(system.env) or None)}
    if system.kind == "ours":
        info["versions"] |= {"commit": checkout_commit(), "tritonclient": peers_env.versions(
            Path(sys.executable), ("tritonclient", "grpcio"))}
    print(f"  ready in {info['ready_s']}s; served: {served or 'by MLServer'}; "
          f"{json.dumps(info['versions'])}", flush=True)
    for call in calls:
        run_h2load(server, call, WARMUP_CONCURRENCY, args.warmup, args.streams)
    points = [measure_grpc(server, info, call, c, args) for call in calls for c in args.concurrency]
    if rest is not None:
        run_wrk(server, MODEL, rest, WARMUP_CONCURRENCY, args.warmup)
        points.append(measure_rest(server, info, rest, max(args.concurrency), args.duration))
    return points


def prepare(server: Server) -> tuple[list[Call], Any, dict[str, str]]:
    """The gRPC bodies the system gets, each checked once; ours' REST JSON body too (checked)."""
    system = server.system
    if system.kind == "ours":
        bodies, served = prepare_ours(system, [MODEL])
        rest = next(b for b in bodies[MODEL] if b.kind == "json")
        spec = httpx.get(f"{system.url}/v2/models/{MODEL}", timeout=30).raise_for_status().json()
        name, kinds = spec["inputs"][0]["name"], ("typed", "raw")
    else:  # MLServer's input is "predict"; the floor takes any
        rest, served, name, kinds = None, {}, "predict", ("typed",)
    server.wait_ready([f"/v2/models/{MODEL}/ready"])
    if rest is not None:
        check_answer(system, MODEL, rest)
        check_tritonclient(system, name)
    return [check_call(system, infer_call(kind, name)) for kind in kinds], rest, served


def infer_call(kind: str, input_name: str) -> Call:
    row = peers_env.sample_row()
    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name=input_name, datatype="FP64", shape=[1, len(row)])
    if kind == "typed":
        tensor.contents.fp64_contents.extend(row)
    else:
        request.raw_input_contents.append(np.asarray(row, dtype="<f8").tobytes())
    return Call(kind, request.SerializeToString())


@functools.cache
def expected_label() -> int:
    """What scikit-learn itself predicts for the row."""
    model = joblib.load(peers_env.MODELS / MODEL / "model.joblib")
    return int(model.predict(np.asarray([peers_env.sample_row()]))[0])


def check_call(system: System, call: Call) -> Call:
    """Sends the exact message h2load will send; its answer must carry scikit-learn's label.
    Returns the call with the size of that good answer."""
    with grpc.insecure_channel(f"127.0.0.1:{system.grpc_port}") as channel:
        infer = channel.unary_unary(METHOD, response_deserializer=pb.ModelInferResponse.FromString)
        answer = infer(call.message, timeout=30)
    label = first_output(answer)
    print(f"  check grpc/{call.kind}: {answer.outputs[0].name}={label} "
          f"({len(answer.outputs)} output(s), {answer.ByteSize()} bytes)", flush=True)
    if system.kind != "floor" and label != expected_label():  # the floor answers a constant
        raise RuntimeError(f"{system.name} answered label {label} to grpc/{call.kind}, "
                           f"scikit-learn says {expected_label()}")
    return Call(call.kind, call.message, answer.ByteSize())


def first_output(answer: Any) -> int:
    output = answer.outputs[0]
    if answer.raw_output_contents:
        dtype = {"INT64": "<i8", "INT32": "<i4", "FP64": "<f8", "FP32": "<f4"}[output.datatype]
        return int(np.frombuffer(answer.raw_output_contents[0], dtype=dtype)[0])
    field = {"INT64": "int64_contents", "INT32": "int_contents", "FP64": "fp64_contents",
             "FP32": "fp32_contents"}[output.datatype]
    return int(getattr(output.contents, field)[0])


def check_tritonclient(system: System, input_name: str) -> None:
    """One call through tritonclient's own gRPC client, as a user of our server makes it."""
    client = triton.InferenceServerClient(f"127.0.0.1:{system.grpc_port}")
    tensor = triton.InferInput(input_name, [1, 20], "FP64")
    tensor.set_data_from_numpy(np.asarray([peers_env.sample_row()], dtype=np.float64))
    label = int(client.infer(MODEL, [tensor]).as_numpy("label")[0])
    client.close()
    print(f"  check tritonclient: label={label}", flush=True)
    if label != expected_label():
        raise RuntimeError(f"{system.name} answered label {label} to tritonclient")


def measure_grpc(server: Server, info: Point, call: Call, concurrency: int,
                 args: argparse.Namespace) -> Point:
    before = usage(server.system)
    result = run_h2load(server, call, concurrency, args.duration, args.streams)
    problems = answer_problems(result, call) + count_problems(server.system, before, result)
    point = {**info, "ts": time.strftime("%H:%M:%S"), "protocol": "grpc", "body": call.kind,
             "concurrency": concurrency, "streams": args.streams, **result,
             "errors": result["errors"] + len(problems), "problems": problems}
    print_point(point)
    return point


def measure_rest(server: Server, info: Point, body: Any, concurrency: int, seconds: int) -> Point:
    before = usage(server.system)
    result = run_wrk(server, MODEL, body, concurrency, seconds)
    calls = {"done": result["requests"], "started": result["requests"] + concurrency}
    problems = count_problems(server.system, before, calls)
    point = {**info, "ts": time.strftime("%H:%M:%S"), "protocol": "rest", "body": body.kind,
             "concurrency": concurrency, "streams": 1, **result,
             "errors": result["errors"] + len(problems), "problems": problems}
    print_point(point)
    return point


def run_h2load(server: Server, call: Call, concurrency: int, seconds: int, streams: int) -> Point:
    """One closed-loop h2load run; its counts, latency from its log, and the CPU used."""
    workdir = server.system.workdir
    body_file, log_file = workdir / f"grpc-{call.kind}.bin", workdir / "h2load.log"
    body_file.write_bytes(call.framed)
    log_file.unlink(missing_ok=True)
    command = [*pinned(CLIENT_CPU), "h2load", "-t1", f"-c{concurrency}", f"-m{streams}",
               "-D", str(seconds), "-d", str(body_file), "-H", "content-type: application/grpc",
               "-H", "te: trailers", "--log-file", str(log_file),
               f"http://127.0.0.1:{server.system.grpc_port}{METHOD}"]
    meter = CpuMeter(server)
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = meter.read()
    if out.returncode != 0 or "finished in" not in out.stdout:
        raise RuntimeError(f"h2load failed (exit {out.returncode}): {out.stderr[-500:]}")
    summary = h2load_summary(out.stdout)
    cpu_s = cpu.pop("server_cpu_s")
    per_request = round(cpu_s / summary["requests"] * 1e6, 1) if summary["requests"] else 0.0
    return {**summary, **latency(log_file), **cpu, "server_cpu_us_per_req": per_request}


def h2load_summary(text: str) -> Point:
    """req/s, call counts and DATA bytes from h2load's summary. Errors: h2load's "failed" (its
    "errored" and timed-out calls among them) and 3xx answers, which h2load counts as succeeded."""
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1] for line in text.splitlines()
             if ":" in line}
    finished = next(line for line in text.splitlines() if line.startswith("finished in"))
    counts = dict((word, int(n)) for n, word in
                  (part.split()[:2] for part in lines["requests"].strip().split(",")))
    statuses = [int(part.split()[0]) for part in lines["status codes"].split(",")]
    return {"rps": float(finished.split(",")[1].split()[0]), "requests": statuses[0],
            "started": counts["started"], "done": counts["done"],
            "errors": counts["failed"] + statuses[1],
            "data_bytes": int(lines["traffic"].rsplit("(", 1)[1].split(")")[0])}


def latency(log_file: Path) -> Point:
    """p50/p90/p99/max in ms over h2load's per-request log (start us, status, duration us)."""
    rows = np.loadtxt(log_file, dtype=np.int64, ndmin=2)
    ms = rows[rows[:, 1] == 200, 2] / 1000 if len(rows) else np.zeros(1)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50_ms": round(float(p50), 3), "p90_ms": round(float(p90), 3),
            "p99_ms": round(float(p99), 3), "max_ms": round(float(ms.max()), 3)}


def answer_problems(result: Point, call: Call) -> list[str]:
    """A good answer is one DATA frame of 5 + answer_size bytes; a failed call has none."""
    expected = result["requests"] * (5 + call.answer_size)
    if result["data_bytes"] == expected:
        return []
    return [f"h2load received {result['data_bytes']} DATA bytes for {result['requests']} calls, "
            f"whole good answers would be {expected}"]


def usage(system: System) -> tuple[int, int] | None:
    """Our model's (requests, errors) over all its versions; None for other systems."""
    if system.kind != "ours":
        return None
    report = httpx.get(f"{system.url}/api/models/{MODEL}/usage", timeout=30).raise_for_status().json()
    return (sum(v["requests"] for v in report["versions"]),
            sum(v["errors"] for v in report["versions"]))


def count_problems(system: System, before: tuple[int, int] | None, result: Point) -> list[str]:
    """Our server must have counted every call the client finished (and at most those it started:
    calls in flight when the client stops may still be answered), none as an error."""
    after = usage(system)
    if before is None or after is None:
        return []
    requests, errors = after[0] - before[0], after[1] - before[1]
    problems = [f"the server counted {errors} error(s)"] if errors else []
    if not result["done"] <= requests <= result["started"]:
        problems.append(f"the server counted {requests} requests; the client finished "
                        f"{result['done']} and started {result['started']}")
    return problems


def print_point(p: Point) -> None:
    bad = f"  ERRORS {p['errors']}: {'; '.join(p['problems']) or p.get('first_bad', '')[:80]}" \
        if p["errors"] else ""
    print(f"  {p['protocol']:<4} {p['body']:<5} c={p['concurrency']:<3} {p['rps']:>8.0f} req/s  "
          f"p50 {p['p50_ms']:7.2f} ms  p99 {p['p99_ms']:7.2f} ms  server {p['server_cpu_pct']}% "
          f"client {p['client_cpu_pct']}% foreign {p['foreign_cpu_pct']}%{bad}", flush=True)


def save(points: list[Point], stamp: str, args: argparse.Namespace) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    common = {"at": stamp, "model": MODEL, "duration_s_asked": args.duration, "reps": args.reps,
              "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU,
              "h2load": peers_env.h2load_version(), "wrk": peers_env.wrk_version()}
    with open(RESULTS, "a") as out:
        for point in points:
            out.write(json.dumps({**common, **point}) + "\n")


Key = tuple[str, str, str, int]


def summarize(points: list[Point]) -> dict[Key, Point]:
    """Median over reps per (system, protocol, body, concurrency); errors summed."""
    groups: dict[Key, list[Point]] = {}
    for p in points:
        groups.setdefault((p["system"], p["protocol"], p["body"], p["concurrency"]), []).append(p)
    return {key: {"rps": statistics.median(p["rps"] for p in group),
                  "all_rps": " / ".join(f"{p['rps']:,.0f}" for p in group),
                  **{k: statistics.median(p[k] for p in group)
                     for k in ("p50_ms", "p99_ms", "server_cpu_pct", "server_cpu_us_per_req")},
                  **{k: max(p[k] for p in group) for k in ("client_cpu_pct", "foreign_cpu_pct")},
                  "errors": sum(p["errors"] for p in group), "reps": len(group)}
            for key, group in groups.items()}


def print_table(points: list[Point]) -> None:
    rows = [[system, protocol, body, str(c), f"{s['rps']:,.0f}", s["all_rps"], f"{s['p50_ms']:.2f}",
             f"{s['p99_ms']:.2f}", f"{s['server_cpu_pct']:.0f}", f"{s['client_cpu_pct']:.0f}",
             f"{s['foreign_cpu_pct']:.0f}", str(s["errors"]), str(s["reps"])]
            for (system, protocol, body, c), s in summarize(points).items()]
    print("\nmedian over reps; p50/p99 in ms; srv% = server tree CPU, load% = h2load or wrk CPU (max),"
          "\nforeign% = other processes on the server's core (max; above ~10 the point is disturbed)")
    print_rows(["system", "protocol", "body", "conc", "req/s", "req/s all reps", "p50", "p99", "srv%",
                "load%", "foreign%", "errors", "reps"], rows)
    served = {p["system"]: p["served"] for p in points if p["served"]}
    for system, models in served.items():
        print(f"{system} serves " + "; ".join(f"{model} {how}" for model, how in models.items()))


def print_goals(points: list[Point], top: int) -> None:
    """Ours / MLServer per gRPC point (goal: req/s x >= 2, p99 x <= 0.5) and ours gRPC / ours
    REST at the highest concurrency (goal: >= 1)."""
    table = summarize(points)
    rows = []
    for (system, protocol, body, c), mine in table.items():
        theirs = table.get(("mlserver-tuned", "grpc", "typed", c))
        if system != "ours" or protocol != "grpc" or theirs is None:
            continue
        rps_x, p99_x = mine["rps"] / theirs["rps"], mine["p99_ms"] / theirs["p99_ms"]
        rows.append([body, str(c), f"{mine['rps']:,.0f}", f"{theirs['rps']:,.0f}", f"{rps_x:.2f}",
                     verdict(rps_x >= GOAL_RPS), f"{p99_x:.2f}", verdict(p99_x <= GOAL_P99)])
    if rows:
        print("\nours gRPC vs mlserver-tuned gRPC (its typed body)")
        print_rows(["body", "conc", "req/s ours", "req/s peer", "req/s x", f">= {GOAL_RPS}",
                    "p99 x", f"<= {GOAL_P99}"], rows)
    rest = table.get(("ours", "rest", "json", top))
    rows = [[body, f"{mine['rps']:,.0f}", f"{rest['rps']:,.0f}", f"{mine['rps'] / rest['rps']:.2f}",
             verdict(mine["rps"] >= rest["rps"]), f"{mine['p99_ms'] / rest['p99_ms']:.2f}"]
            for (system, protocol, body, c), mine in table.items()
            if rest and system == "ours" and protocol == "grpc" and c == top]
    if rows:
        print(f"\nours gRPC vs ours REST (v2 JSON) at c={top}")
        print_rows(["body", "req/s gRPC", "req/s REST", "req/s x", ">= 1", "p99 x"], rows)
    print_floor(table, top)


def print_floor(table: dict[Key, Point], top: int) -> None:
    """Ours beside the gRPC floor (grpc.aio answering a constant): server CPU per call and
    req/s; and the floor's req/s against our REST at the highest concurrency, the most any
    grpc.aio server could make of "gRPC >= REST"."""
    rows = []
    for (system, protocol, body, c), mine in table.items():
        floor = table.get(("grpc-floor", "grpc", "typed", c))
        if system != "ours" or protocol != "grpc" or floor is None:
            continue
        rows.append([body, str(c), f"{mine['server_cpu_us_per_req']:.0f}",
                     f"{floor['server_cpu_us_per_req']:.0f}",
                     f"{mine['server_cpu_us_per_req'] / floor['server_cpu_us_per_req']:.2f}",
                     f"{mine['rps']:,.0f}", f"{floor['rps']:,.0f}"])
    if rows:
        print("\nours gRPC vs the gRPC floor (grpc.aio answering a constant); cpu us = server CPU "
              "per call")
        print_rows(["body", "conc", "cpu us ours", "cpu us floor", "cpu x", "req/s ours",
                    "req/s floor"], rows)
    floor, rest = table.get(("grpc-floor", "grpc", "typed", top)), table.get(("ours", "rest", "json", top))
    if floor and rest:
        print(f"the gRPC floor at c={top}: {floor['rps']:,.0f} req/s, {floor['rps'] / rest['rps']:.2f}x "
              f"our REST's {rest['rps']:,.0f}")


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


if __name__ == "__main__":
    main()
