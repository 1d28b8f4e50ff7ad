"""The same app under the other HTTP server: granian."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import ServerProcess


def test_the_demo_serves_under_granian(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "var", "--demo", "--http-server", "granian")
    try:
        answer = httpx.post(f"{server.url}/v2/models/iris/infer", json={"inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]})
        models = httpx.get(f"{server.url}/api/models").json()
    finally:
        server.stop()
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [0]
    assert {m["name"] for m in models} == {"iris", "iris-sklearn"}
    assert "Started worker-1" in server.log()  # granian's, not uvicorn's
