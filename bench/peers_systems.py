"""The systems under test, how each is started, made ready, measured for memory and stopped.

Every server runs alone, pinned to SERVER_CPU with one BLAS/OpenMP thread, in a fresh working
directory bench/.peers/run/<system> (its log beside it in bench/.peers/logs). A server is
stopped by its PID: SIGTERM, then SIGKILL for it and whatever it forked after a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from peers_env import HTTPTOOLS, MODELS, PEERS, sample_row

SERVER_CPU, CLIENT_CPU = "0", "1"
BENCH = Path(__file__).resolve().parent
OURS_CLI = Path(sys.executable).parent / "model-manager"
STOP_TIMEOUT_S = 15
READY_TIMEOUT_S = 120
OURS_PACKAGES = ("ml-model-manager", "uvicorn", "httptools", "uvloop", "granian", "starlette",
                 "fastapi", "scikit-learn", "skops", "numpy")
MLSERVER_PACKAGES = ("mlserver", "mlserver-sklearn", "uvicorn", "httptools", "uvloop", "starlette",
                     "fastapi", "scikit-learn", "numpy")
FLOOR_PACKAGES = ("uvicorn", "httptools", "uvloop", "granian", "orjson")


@dataclass(frozen=True)
class System:
    """One server configuration. `kind` is ours, mlserver or floor (floor serves no model)."""

    name: str
    kind: str
    port: int
    command: tuple[str, ...]
    python: Path
    packages: tuple[str, ...]
    http: str
    env: tuple[tuple[str, str], ...] = ()
    other_ports: tuple[int, ...] = ()
    push_form: tuple[tuple[str, str], ...] = ()
    """Extra form fields of our model uploads."""
    by_default: bool = True
    grpc_port: int | None = None
    """Where the system serves gRPC inference, for bench/grpc.py; None: not measured."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def workdir(self) -> Path:
        return PEERS / "run" / self.name


@dataclass(frozen=True)
class Body:
    """One request body: "json", or "binary" (the V2 binary tensor extension)."""

    kind: str
    data: bytes
    content_type: str = "application/json"
    header_length: int | None = None


def ours_has_granian() -> bool:
    """Whether `model-manager serve` offers --http-server granian."""
    help_text = subprocess.run([str(OURS_CLI), "serve", "--help"], capture_output=True, text=True).stdout
    return bool(re.search(r"--http-server\b[^\n]*(\n\s+[^-\s][^\n]*)*granian", help_text))


BATCHING = {"max_batch_size": 32, "max_queue_delay_us": 2000}
"""Dynamic batching of ours-sklearn-batched: the uncompiled estimator, up to 32 rows a run."""


def catalog(with_granian: bool) -> dict[str, System]:
    """Every system this run can start, by name."""
    systems = [_ours("ours", 18300), _mlserver("mlserver-tuned", 18310, tuned=True),
               _mlserver("mlserver-default", 18320, tuned=False), _floor_uvicorn(18330),
               _ours("ours-sklearn", 18302, push_form=(("compile", "false"),), by_default=False),
               _ours("ours-sklearn-batched", 18303, by_default=False, push_form=(
                   ("compile", "false"), ("metadata", json.dumps({"batching": BATCHING}))))]
    if with_granian:
        systems[1:1] = [_ours("ours-granian", 18301, ("--http-server", "granian"))]
        systems.append(_floor_granian(18331))
    return {s.name: s for s in systems}


def grpc_catalog() -> dict[str, System]:
    """The systems of bench/grpc.py: ours, MLServer tuned and the gRPC floor, each with a gRPC
    port."""
    systems = [_ours("ours", 18340, grpc_port=18341), _mlserver("mlserver-tuned", 18350, tuned=True),
               _grpc_floor("grpc-floor", 18360, 18361)]
    return {s.name: s for s in systems}


def _ours(name: str, port: int, extra: tuple[str, ...] = (),
          push_form: tuple[tuple[str, str], ...] = (), by_default: bool = True,
          grpc_port: int | None = None) -> System:
    python = Path(sys.executable)
    http = "granian (Rust)" if extra else f"uvicorn {_parser(python, {})}, uvloop"
    grpc = ("--grpc-port", str(grpc_port or 0))  # 0: the REST benches leave 8081 alone
    command = (str(OURS_CLI), "serve", "--port", str(port), "--data-dir",
               str(PEERS / "run" / name / "var"), "--log-level", "warning", *extra, *grpc)
    return System(name, "ours", port, command, python, OURS_PACKAGES, http,
                  other_ports=(grpc_port,) if grpc_port is not None else (),
                  push_form=push_form, by_default=by_default, grpc_port=grpc_port)


def _mlserver(name: str, port: int, tuned: bool) -> System:
    env = {"MLSERVER_HOST": "127.0.0.1", "MLSERVER_HTTP_PORT": str(port),
           "MLSERVER_GRPC_PORT": str(port + 1), "MLSERVER_METRICS_PORT": str(port + 2)}
    if tuned:
        # Plain `pip install mlserver` brings no httptools (uvicorn falls back to h11); the
        # tuned variant gets it so that it parses HTTP like our server does.
        env |= {"MLSERVER_PARALLEL_WORKERS": "0", "MLSERVER_DEBUG": "false",
                "MLSERVER_METRICS_ENDPOINT": "", "MLSERVER_GZIP_ENABLED": "false",
                "PYTHONPATH": str(HTTPTOOLS)}
    venv = PEERS / "venv-mlserver"
    python = venv / "bin" / "python"
    command = (str(venv / "bin" / "mlserver"), "start", str(MODELS))
    http = f"uvicorn {_parser(python, env)}, uvloop"
    return System(name, "mlserver", port, command, python, MLSERVER_PACKAGES, http,
                  tuple(env.items()), (port + 1, port + 2), grpc_port=port + 1)


def _floor_uvicorn(port: int) -> System:
    venv = PEERS / "venv-floor"
    command = (str(venv / "bin" / "uvicorn"), "floor_app:app", "--app-dir", str(BENCH), "--host",
               "127.0.0.1", "--port", str(port), "--http", "httptools", "--loop", "uvloop",
               "--no-access-log", "--workers", "1", "--log-level", "warning")
    return System("floor", "floor", port, command, venv / "bin" / "python", FLOOR_PACKAGES,
                  "uvicorn httptools, uvloop")


def _grpc_floor(name: str, port: int, grpc_port: int) -> System:
    """grpc.aio in uvicorn's loop answering a constant ModelInfer (bench/grpc_floor_app.py), in our
    environment: the grpcio, uvicorn, httptools and uvloop our server runs on."""
    python = Path(sys.executable)
    command = (str(python), "-m", "uvicorn", "grpc_floor_app:app", "--app-dir", str(BENCH),
               "--host", "127.0.0.1", "--port", str(port), "--http", "httptools", "--loop",
               "uvloop", "--no-access-log", "--workers", "1", "--log-level", "warning")
    return System(name, "floor", port, command, python, ("grpcio", "uvicorn", "uvloop"),
                  "grpc.aio in uvicorn httptools, uvloop", (("GRPC_FLOOR_PORT", str(grpc_port)),),
                  (grpc_port,), grpc_port=grpc_port)


def _floor_granian(port: int) -> System:
    venv = PEERS / "venv-floor"
    command = (str(venv / "bin" / "granian"), "--interface", "asgi", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1", "--runtime-threads", "1", "--http", "1",
               "--no-ws", "--loop", "uvloop",
               "--no-access-log", "--log-level", "warning", "--working-dir", str(BENCH),
               "floor_app:app")
    return System("floor-granian", "floor", port, command, venv / "bin" / "python", FLOOR_PACKAGES,
                  "granian (Rust)")


def _parser(python: Path, env: dict[str, str]) -> str:
    """What uvicorn's default http="auto" picks for this interpreter: httptools if importable."""
    found = subprocess.run([str(python), "-c", "import httptools"], env={**base_env(), **env},
                           capture_output=True).returncode == 0
    return "httptools" if found else "h11 (no httptools installed)"


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def pinned(cpu: str) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", cpu]
    return []


class PortTaken(RuntimeError):
    pass


class Server:
    """A started system; use as a context manager so that it is always stopped."""

    def __init__(self, system: System) -> None:
        for port in (system.port, *system.other_ports):
            if _is_listening(port):
                raise PortTaken(f"port {port} is already taken; refusing to start {system.name} "
                                "(a stale server would answer in its place)")
        self.system = system
        shutil.rmtree(system.workdir, ignore_errors=True)
        system.workdir.mkdir(parents=True)
        self.log_path = PEERS / "logs" / f"{system.name}.log"
        self.log_path.parent.mkdir(exist_ok=True)
        self.started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([*pinned(SERVER_CPU), *system.command],
                                            cwd=system.workdir, env=base_env() | dict(system.env),
                                            stdout=log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self, paths: list[str]) -> float:
        """Seconds from start until every path answers 200."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = list(paths)
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.system.name} exited with {self.process.returncode}:\n"
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.system.name} not ready after {READY_TIMEOUT_S}s: "
                                   f"{pending[0]}\n{self.log_tail()}")
            if _answers(self.system.url + pending[0]):
                pending.pop(0)
            else:
                time.sleep(0.1)
        return time.monotonic() - self.started

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def pids(self) -> list[int]:
        return [self.process.pid, *descendants(self.process.pid)]

    def cpu_ticks(self) -> int:
        return sum(stat_ticks(pid) for pid in self.pids())

    def memory_mib(self) -> dict[str, float]:
        """RSS now and the peak (VmHWM), each summed over the process tree."""
        pids = self.pids()
        return {"procs": len(pids),
                "idle_rss_mib": sum(_status_kib(p, "VmRSS") for p in pids) / 1024,
                "peak_rss_mib": sum(_status_kib(p, "VmHWM") for p in pids) / 1024}

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        children = descendants(self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"  {self.system.name} ignored SIGTERM for {STOP_TIMEOUT_S}s; SIGKILL", flush=True)
            self.process.kill()
            self.process.wait()
        for pid in children:
            _kill_if_alive(pid)


def prepare_ours(system: System, models: list[str]) -> tuple[dict[str, list[Body]], dict[str, str]]:
    """Push each model's skops file, point `production` at it, load it; bodies that fit its input.

    Without `outputs` our scikit-learn runtime answers every output of the signature (label and
    probabilities: predict and predict_proba), MLServer only predict; json-label asks for the
    first output alone, the same work MLServer does. Also says how each model is served: the
    server may serve an ONNX twin of the estimator (its version's metadata["compiled"])."""
    bodies: dict[str, list[Body]] = {}
    served: dict[str, str] = {}
    with httpx.Client(base_url=system.url, timeout=300) as client:
        for model in models:
            with open(MODELS / model / "model.skops", "rb") as f:
                pushed = client.post(f"/api/models/{model}/versions", data=dict(system.push_form),
                                     files={"file": ("model.skops", f)})
            pushed.raise_for_status()
            served[model] = _served_as(pushed.json())
            client.put(f"/api/models/{model}/aliases/production",
                       json={"version": pushed.json()["version"]}).raise_for_status()
            client.post(f"/v2/repository/models/{model}/load").raise_for_status()
            metadata = client.get(f"/v2/models/{model}").raise_for_status().json()
            spec, first_output = metadata["inputs"][0], metadata["outputs"][0]["name"]
            bodies[model] = [json_body(spec["name"], spec["datatype"]),
                             binary_body(spec["name"], spec["datatype"]),
                             json_body(spec["name"], spec["datatype"], only=first_output)]
    return bodies, served


def _served_as(version: dict[str, Any]) -> str:
    compiled = version.get("metadata", {}).get("compiled")
    if not compiled:
        return f"as uploaded ({version.get('format')})"
    if compiled.get("format"):
        return f"compiled twin ({compiled['format']})"
    return f"as uploaded, not compiled: {compiled.get('reason')}"


def json_body(name: str, datatype: str, only: str | None = None) -> Body:
    """The row as V2 JSON; `only` names the one output to ask for (kind "json-label")."""
    row = sample_row()
    doc: dict[str, object] = {"inputs": [{"name": name, "shape": [1, len(row)], "datatype": datatype,
                                          "data": row}]}
    if only is None:
        return Body("json", _dumps(doc))
    return Body("json-label", _dumps({**doc, "outputs": [{"name": only}]}))


def binary_body(name: str, datatype: str) -> Body:
    row = sample_row()
    raw = np.asarray(row, dtype={"FP64": "<f8", "FP32": "<f4"}[datatype]).tobytes()
    header = _dumps({"inputs": [{"name": name, "shape": [1, len(row)], "datatype": datatype,
                                 "parameters": {"binary_data_size": len(raw)}}]})
    return Body("binary", header + raw, "application/octet-stream", len(header))


def _dumps(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _is_listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (not ``root`` itself)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def stat_ticks(pid: int) -> int:
    """CPU clock ticks the process has spent so far, user and system (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _status_kib(pid: int, field: str) -> int:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.startswith(field + ":")), 0)


def _kill_if_alive(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
