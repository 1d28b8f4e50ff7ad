"""`make serve` on a fresh copy of the repository: a light environment of its own, serving the demo."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]


def fresh_copy(target: Path) -> Path:
    """The files git tracks (or would), as a fresh clone of this working tree has them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def size_mib(folder: Path) -> float:
    return sum(p.lstat().st_size for p in folder.rglob("*") if not p.is_symlink()) / 2**20


@pytest.mark.timeout(600)
def test_make_serve_installs_only_what_serving_needs_and_serves_the_demo(tmp_path: Path) -> None:
    repo, port = fresh_copy(tmp_path / "repo"), free_port()
    started, log = time.monotonic(), tmp_path / "make-serve.log"
    with open(log, "wb") as out:
        make = subprocess.Popen(["make", "serve", f"PORT={port}"], cwd=repo, start_new_session=True,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 540
        while True:
            assert make.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "make serve never served the demo models"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/models/iris/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        seconds = time.monotonic() - started
        demo = httpx.post(f"http://127.0.0.1:{port}/v2/models/iris/infer", json={"inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]})
        assert demo.status_code == 200 and demo.json()["outputs"][0]["data"] == [0]
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=60)
    venv = repo / ".venv-serve"
    print(f"make serve: ready with the demo in {seconds:.0f}s; .venv-serve is "
          f"{size_mib(venv):.0f} MiB")
    assert size_mib(venv) < 600
    assert not (repo / ".venv").exists()  # the test environment is not built for serving
    found = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import importlib.util as u; print([m for m in ('torch', 'jax', "
                            "'keras', 'pytest', 'playwright') if u.find_spec(m)])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert found == "[]"
