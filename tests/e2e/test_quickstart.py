"""The README's quickstart, through the real CLI against the real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np

from tests.conftest import IrisFiles
from tests.support import ServerProcess, free_port


def test_push_alias_predict_ls(server: ServerProcess, iris: IrisFiles) -> None:
    pushed = server.cli("push", str(iris.onnx), "--name", "quick-iris")
    assert "pushed quick-iris version 1" in pushed.stdout
    server.cli("push", str(iris.skops), "--name", "quick-iris")
    assert "quick-iris@production -> 1" in server.cli(
        "alias", "set", "quick-iris", "production", "1").stdout

    predicted = json.loads(server.cli("predict", "quick-iris", "--input", "[[5.1,3.5,1.4,0.2]]").stdout)
    assert predicted["model_version"] == "1"
    assert predicted["outputs"]["label"] == [0]
    assert np.asarray(predicted["outputs"]["probabilities"]).shape == (1, 3)

    by_version = json.loads(server.cli("predict", "quick-iris", "--version", "2",
                                       "--input", json.dumps(iris.x.tolist())).stdout)
    assert by_version["model_version"] == "2"
    assert by_version["outputs"]["label"] == iris.model.predict(iris.x).tolist()

    table = server.cli("ls").stdout.splitlines()
    assert table[0].split() == ["MODEL", "LATEST", "VERSIONS", "ALIASES"]
    assert ["quick-iris", "2", "2", "production=1"] in [line.split() for line in table]
    versions = server.cli("ls", "quick-iris").stdout
    assert "onnx" in versions and "sklearn" in versions
    assert versions.split()[:8] == ["VERSION", "FORMAT", "SIZE", "SHA256", "CREATED", "ALIASES",
                                    "STATE", "LOADED"]
    assert "KiB" in versions  # sizes as people read them, not byte counts


def test_default_route_follows_production(server: ServerProcess, iris: IrisFiles) -> None:
    server.cli("push", str(iris.onnx), "--name", "routed")
    server.cli("push", str(iris.skops), "--name", "routed")
    infer = ["predict", "routed", "--input", "[[1,2,3,4]]"]
    assert json.loads(server.cli(*infer).stdout)["model_version"] == "2"  # newest, no production
    server.cli("alias", "set", "routed", "production", "1")
    assert json.loads(server.cli(*infer).stdout)["model_version"] == "1"
    server.cli("alias", "rm", "routed", "production")
    assert json.loads(server.cli(*infer).stdout)["model_version"] == "2"


def test_push_with_alias_and_delete(server: ServerProcess, iris: IrisFiles) -> None:
    server.cli("push", str(iris.skops), "--name", "deletable", "--alias", "staging")
    refused = server.cli("rm", "deletable", "1", check=False)
    assert refused.returncode == 1
    assert "alias" in refused.stderr and "staging" in refused.stderr
    server.cli("alias", "rm", "deletable", "staging")
    assert "deleted deletable version 1" in server.cli("rm", "deletable", "1").stdout
    shown = json.loads(server.cli("show", "deletable").stdout)
    assert shown["versions"] == []


def test_cli_errors_are_one_clear_line(server: ServerProcess, tmp_path: Path) -> None:
    missing = server.cli("predict", "nope", "--input", "[[1]]", check=False)
    assert missing.returncode == 1
    assert "not registered" in missing.stderr
    assert "Traceback" not in missing.stderr
    down = ServerProcess.__new__(ServerProcess)
    down.url = f"http://127.0.0.1:{free_port()}"
    unreachable = down.cli("ls", check=False)
    assert unreachable.returncode == 1
    assert "cannot reach the server" in unreachable.stderr


def test_python_dash_m_runs_the_cli(server: ServerProcess) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "model_manager", "--url", server.url, "ls",
                             "--json"], capture_output=True, text=True, timeout=60, check=True)
    assert isinstance(json.loads(result.stdout), list)


def test_identical_uploads_share_one_blob(server: ServerProcess, iris: IrisFiles) -> None:
    first = server.cli("push", str(iris.onnx), "--name", "dedup-a")
    second = server.cli("push", str(iris.onnx), "--name", "dedup-b")
    assert first.stdout.split("sha256 ")[1] == second.stdout.split("sha256 ")[1]
    digest = httpx.get(f"{server.url}/api/models/dedup-a/versions/1").json()["sha256"]
    blobs = list((server.data_dir / "store" / "sha256").rglob(digest))
    assert len(blobs) == 1
