"""The app under each HTTP server: uvicorn (the default) and granian."""

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
        redirect = httpx.get(f"{server.url}/api/models/", headers={"X-Forwarded-Proto": "https"})
    finally:
        server.stop()
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [0]
    assert {m["name"] for m in models} == {"iris", "iris-sklearn"}
    assert redirect.headers["location"] == f"{server.url.replace('http:', 'https:')}/api/models"
    assert "Started worker-1" in server.log()  # granian's, not uvicorn's


def test_a_proxy_on_the_same_host_keeps_the_clients_scheme(server: ServerProcess) -> None:
    """Behind a proxy on the host (the fleet's HAProxy, a TLS sidecar), the API's redirects keep
    the scheme the client used: X-Forwarded-Proto from 127.0.0.1, which uvicorn trusts by default
    (FORWARDED_ALLOW_IPS), is honoured; from anyone else it would not be."""
    with httpx.Client(base_url=server.url) as client:
        forwarded = client.get("/api/models/", headers={"X-Forwarded-Proto": "https"})
        direct = client.get("/api/models/")
        predicted = client.post("/v2/models/missing/infer", headers={"X-Forwarded-Proto": "https"},
                                json={"inputs": []})
    https = server.url.replace("http:", "https:")
    assert forwarded.status_code == 307 and forwarded.headers["location"] == f"{https}/api/models"
    assert direct.headers["location"] == f"{server.url}/api/models"
    assert predicted.status_code == 404 and "missing" in predicted.json()["error"]
