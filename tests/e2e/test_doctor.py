"""``model-manager doctor``: the registry against the store, on a stopped server's data or live."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import httpx

from tests.onnx_models import offset_model
from tests.support import CLI, ServerProcess, push


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)


def test_doctor_finds_and_repairs_what_is_safe(tmp_path: Path) -> None:
    data = tmp_path / "var"
    server = ServerProcess(data)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        first = push(client, "m", offset_model(tmp_path / "a.onnx", 1.0)).json()
        push(client, "m", offset_model(tmp_path / "b.onnx", 2.0))
    live = json.loads(doctor("--url", server.url, "doctor", "--json").stdout)
    assert live == {"problems": [], "warnings": []}
    server.stop()
    store = data / "store"
    orphan = b"left by a purge cut short"
    digest = hashlib.sha256(orphan).hexdigest()
    (store / "sha256" / digest[:2]).mkdir(parents=True, exist_ok=True)
    (store / "sha256" / digest[:2] / digest).write_bytes(orphan)
    (store / "tmp").mkdir(exist_ok=True)
    (store / "tmp" / "upload-123.part").write_bytes(b"half an upload")
    blob = store / "sha256" / first["sha256"][:2] / first["sha256"]
    original = blob.read_bytes()
    blob.write_bytes(b"bit rot")

    found = doctor("doctor", "--data-dir", str(data), "--json")
    assert found.returncode == 1
    kinds = {p["kind"]: p for p in json.loads(found.stdout)["problems"]}
    assert set(kinds) == {"corrupt_blob", "orphan_blob", "temp_file"}
    assert kinds["corrupt_blob"]["target"] == first["sha256"] and not kinds["corrupt_blob"]["repairable"]
    repaired = doctor("doctor", "--data-dir", str(data), "--repair")
    assert repaired.returncode == 1 and "repaired" in repaired.stdout  # the corrupt blob remains
    assert not (store / "tmp" / "upload-123.part").exists()
    assert not (store / "sha256" / digest[:2] / digest).exists()
    blob.write_bytes(original)
    healthy = doctor("doctor", "--data-dir", str(data))
    assert healthy.returncode == 0 and "agree" in healthy.stdout
