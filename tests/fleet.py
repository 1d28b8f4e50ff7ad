"""``deploy/fleet/run-local.sh`` in a subprocess: replicas behind HAProxy, and what each holds."""

from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import httpx
import numpy as np

from tests.support import BIN, free_port

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "fleet" / "run-local.sh"
CONFIG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"


def haproxy_path() -> str:
    path = shutil.which("haproxy")
    if path is None:
        raise RuntimeError("haproxy is not installed (or not on PATH): `make haproxy` installs "
                           "Debian's")
    return path


@dataclasses.dataclass(frozen=True)
class Replica:
    name: str
    url: str
    pid: int

    def loaded(self) -> list[tuple[str, int]]:
        """(model, version) of every version this replica holds in memory."""
        cache = httpx.get(f"{self.url}/api/cache", timeout=10).json()
        return [(entry["model"], entry["version"]) for entry in cache["loaded"]]

    def used_bytes(self) -> int:
        return int(httpx.get(f"{self.url}/api/cache", timeout=10).json()["used_bytes"])


class LocalFleet:
    """``run-local.sh replicas *serve_args`` with its data in ``data``; ``url`` is HAProxy's.

    A context manager: leaving it sends SIGTERM to the script, which stops what it started."""

    def __init__(self, data: Path, replicas: int, *serve_args: str, budget: str = "1GiB",
                 balance: str | None = None) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "MODEL_MANAGER": str(BIN / "model-manager"),
               "HAPROXY": haproxy_path(), "MM_FLEET_PORT": str(self.port),
               "MM_FLEET_DATA": str(data), "MM_BUDGET": budget}
        if balance is not None:
            env["MM_FLEET_BALANCE"] = balance
        data.mkdir(parents=True, exist_ok=True)
        self.log_path = data / "run-local.out"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(["bash", str(SCRIPT), str(replicas), *serve_args],
                                            stdout=log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready()
        self.replicas = [Replica(name, url, int(pid)) for name, url, pid, _ in
                         (line.split() for line in (data / "replicas").read_text().splitlines())]

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while f"behind {self.url}" not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the fleet did not start:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def holders(self) -> dict[str, set[str]]:
        """Model name -> the replicas (names) holding one of its versions, over live replicas."""
        held: dict[str, set[str]] = {}
        for replica in self.replicas:
            if is_alive(replica.pid):
                for model, _version in replica.loaded():
                    held.setdefault(model, set()).add(replica.name)
        return held

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> LocalFleet:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def child_pids(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def zipf_trace(models: Sequence[str], requests: int, s: float = 1.1, seed: int = 0) -> list[str]:
    """``requests`` model names, the k-th of ``models`` asked in proportion to 1 / k**s."""
    weights = 1 / np.arange(1, len(models) + 1) ** s
    picks = np.random.default_rng(seed).choice(len(models), size=requests, p=weights / weights.sum())
    return [models[i] for i in picks]


@dataclasses.dataclass(frozen=True)
class Answer:
    model: str
    status: int  # 0: no HTTP answer
    seconds: float
    outputs: list[float]


def drive(url: str, trace: Sequence[str], clients: int, body: Callable[[str], object],
          stop: threading.Event | None = None, pause: float = 0) -> list[Answer]:
    """Sends the ``trace`` (infer requests, ``body(model)`` each) through ``clients`` threads,
    each taking the next request ``pause`` seconds after its previous one is answered; ends
    early on ``stop``."""
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for model in trace:
        todo.put(model)
    answers: list[Answer] = []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while not (stop is not None and stop.is_set()):
                try:
                    model = todo.get_nowait()
                except queue.Empty:
                    return
                answers.append(ask(http, model, body(model)))
                time.sleep(pause)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def ask(http: httpx.Client, model: str, body: object) -> Answer:
    started = time.perf_counter()
    try:
        response = http.post(f"/v2/models/{model}/infer", json=body)
    except httpx.TransportError:
        return Answer(model, 0, time.perf_counter() - started, [])
    seconds = time.perf_counter() - started
    outputs = response.json()["outputs"][0]["data"] if response.status_code == 200 else []
    return Answer(model, response.status_code, seconds, outputs)
