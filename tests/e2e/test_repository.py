"""The v2 repository extension and the audit trail, on the real server."""

from __future__ import annotations

import httpx

from tests.conftest import IrisFiles
from tests.support import ServerProcess, push


def index(client: httpx.Client, **body: bool) -> dict[tuple[str, str], str]:
    entries = client.post("/v2/repository/index", json=body).json()
    return {(e["name"], e["version"]): e["state"] for e in entries}


def test_index_load_unload(server: ServerProcess, iris: IrisFiles) -> None:
    with httpx.Client(base_url=server.url) as client:
        push(client, "repo", iris.onnx)
        assert index(client)[("repo", "1")] == "UNAVAILABLE"  # registered, loads on first use
        assert ("repo", "1") not in index(client, ready=True)

        loaded = client.post("/v2/repository/models/repo/load").json()
        assert (loaded["name"], loaded["version"], loaded["state"]) == ("repo", "1", "READY")
        assert loaded["loaded_bytes"] > 0
        assert index(client, ready=True)[("repo", "1")] == "READY"

        assert client.post("/v2/repository/models/repo/unload").json()["unloaded"] == ["1"]
        assert ("repo", "1") not in index(client, ready=True)
        assert client.post("/v2/repository/models/missing/load").status_code == 404
        assert client.post("/v2/repository/models/missing/unload").status_code == 404
        assert client.post("/v2/repository/index", content=b"{oops").status_code == 400

        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                            "data": [1, 2, 3, 4]}]}
        assert client.post("/v2/models/repo/infer", json=body).status_code == 200
        assert index(client, ready=True)[("repo", "1")] == "READY"  # the request loaded it


def test_events_record_uploads_aliases_and_deletes(server: ServerProcess, iris: IrisFiles) -> None:
    with httpx.Client(base_url=server.url) as client:
        push(client, "audited", iris.onnx)
        push(client, "audited", iris.skops)
        client.put("/api/models/audited/aliases/production", json={"version": 2})
        client.put("/api/models/audited/aliases/production", json={"version": 1})
        client.delete("/api/models/audited/versions/2")
        events = client.get("/api/models/audited/events").json()
    kinds = [e["kind"] for e in events]
    assert kinds == ["version.deleted", "alias.set", "alias.set", "version.created",
                     "version.created"]
    assert events[1]["details"] == {"alias": "production", "version": 1, "previous": 2}
