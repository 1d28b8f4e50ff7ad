"""A first start with --demo registers models a newcomer can predict with at once."""

from __future__ import annotations

import httpx

from tests.support import ServerProcess


def test_demo_models_predict_with_the_readme_curl_body(demo_server: ServerProcess) -> None:
    models = {m["name"]: m for m in httpx.get(f"{demo_server.url}/api/models").json()}
    assert set(models) >= {"iris", "iris-sklearn"}
    assert models["iris"]["aliases"] == {"production": 1}
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                        "data": [[5.1, 3.5, 1.4, 0.2]]}]}
    answer = httpx.post(f"{demo_server.url}/v2/models/iris/infer", json=body).json()
    assert answer["outputs"][0] == {"name": "label", "datatype": "INT64", "shape": [1], "data": [0]}


def test_demo_is_registered_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "var"
    first = ServerProcess(data, "--demo")
    first.stop()
    second = ServerProcess(data, "--demo")
    try:
        versions = httpx.get(f"{second.url}/api/models/iris").json()["versions"]
        assert [v["version"] for v in versions] == [1]
    finally:
        second.stop()
