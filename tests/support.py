"""Helpers for tests: the real server in a subprocess, and uploads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
CLI = str(BIN / "model-manager")


def eventually(check: Callable[[], object], timeout: float = 30, what: str = "the condition"
               ) -> None:
    """Wait until ``check()`` holds, asking every 0.1 s; fails past ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``model-manager serve`` in a subprocess, on free ports (HTTP and gRPC), with its own data
    dir."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None,
                 wait_ready: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_port = free_port()
        self.grpc_address = f"127.0.0.1:{self.grpc_port}"
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        command = [CLI, "serve", "--port", str(self.port), "--grpc-port", str(self.grpc_port),
                   "--data-dir", str(data_dir), *args]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **(env or {})})
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([CLI, "--url", self.url, *args], capture_output=True, text=True,
                                timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"model-manager {' '.join(args)} failed: {result.stderr}")
        return result

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def push(client: httpx.Client, name: str, path: Path, **data: str) -> httpx.Response:
    with open(path, "rb") as f:
        return client.post(f"/api/models/{name}/versions", files={"file": (path.name, f)},
                            data=data, timeout=120)  # uploads check-load (and compile) the model
