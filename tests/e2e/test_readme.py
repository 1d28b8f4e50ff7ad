"""The README's Quickstart, run as written against a server started as `make serve` starts it.

Every shell and Python block of the Quickstart runs, in order, in a folder holding an `iris.onnx`.
The only change made to a block is the server's port (the README's 8080 becomes a free one); `curl`
fails on an HTTP error, and the CLI finds the server through MODEL_MANAGER_URL. A block whose
first line is `# not run by the tests: <why>` is skipped, visibly so in the README.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IrisFiles
from tests.support import BIN, ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"
SKIP = "# not run by the tests:"


def quickstart_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block between '## Quickstart' and the next section."""
    section = text.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(sh|python)\n(.*?)^```$", section, flags=re.M | re.S)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # `make serve` runs `model-manager serve --port $(PORT) --demo` on a fresh data dir.
    server = ServerProcess(tmp_path_factory.mktemp("readme") / "var", "--demo")
    yield server
    server.stop()


def run_block(language: str, code: str, server: ServerProcess, cwd: Path) -> str:
    code = code.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}")
    env = {**os.environ, "MODEL_MANAGER_URL": server.url,
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    if language == "sh":
        command = ["bash", "-c", 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n'
                   + code]
    else:
        command = [sys.executable, "-c", code]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"README block failed:\n{code}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_every_quickstart_block_runs_as_written(server: ServerProcess, iris: IrisFiles,
                                                tmp_path: Path) -> None:
    shutil.copy(iris.onnx, tmp_path / "iris.onnx")
    blocks = quickstart_blocks(README.read_text())
    ran = [run_block(language, code, server, tmp_path) for language, code in blocks
           if not code.startswith(SKIP)]

    assert len(ran) == len(blocks) >= 4
    first = json.loads(ran[0])  # the demo model answers the first curl as the README shows
    assert first["model_name"] == "iris" and first["outputs"][0]["data"] == [0]
    assert "pushed iris version 2" in ran[1] and "iris@production -> 2" in ran[1]
    assert "[0]" in ran[-1]  # tritonclient printed the label
    assert re.search(r"memory budget \d+\.\d [KMGT]iB\)", server.log())  # sizes as people read them
    assert re.search(r"loaded iris v\d: \d+\.\d [KM]iB in", server.log())


def test_a_block_that_drifts_from_the_code_fails(server: ServerProcess, tmp_path: Path) -> None:
    drifted = "model-manager predict iris --inputs '[[5.1,3.5,1.4,0.2]]'"  # a renamed flag
    with pytest.raises(AssertionError, match="README block failed"):
        run_block("sh", drifted, server, tmp_path)
    with pytest.raises(AssertionError, match="README block failed"):  # curl fails on a 404 too
        run_block("sh", "curl -s http://127.0.0.1:8080/v2/models/nope", server, tmp_path)
