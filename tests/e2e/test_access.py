"""API keys and roles through the real server and CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.onnx_models import offset_model
from tests.support import CLI, ServerProcess, push

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_and_roles(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "var")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as open_client:  # no key exists yet
            push(open_client, "guarded", offset_model(tmp_path / "m.onnx", 1.0))
        admin = server.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip()
        assert admin.startswith("mm_")

        def new_key(role: str, name: str) -> str:
            return httpx.post(f"{server.url}/api/keys", json={"name": name, "role": role},
                              headers=bearer(admin)).json()["key"]

        keys = {role: new_key(role, f"{role}-key") for role in ("deployer", "predict", "read")}
        with httpx.Client(base_url=server.url, timeout=60) as client:
            anonymous = client.get("/api/models")
            assert anonymous.status_code == 401 and "API key" in anonymous.json()["error"]
            assert anonymous.headers["www-authenticate"] == "Bearer"
            assert client.get("/v2/health/ready").status_code == 200  # health needs no key
            assert client.get("/api/models", headers=bearer("mm_nope_nope")).status_code == 401
            assert client.get("/api/models", headers=bearer(admin[:-1] + "x")).status_code == 401
            predict = bearer(keys["predict"])
            assert client.post("/v2/models/guarded/infer", json=BODY, headers=predict).status_code == 200
            assert client.get("/v2/models/guarded", headers=predict).status_code == 200
            refused = client.put("/api/models/guarded/aliases/production", json={"version": 1},
                                 headers=predict)
            assert refused.status_code == 403 and "role predict" in refused.json()["error"]
            read = {"X-API-Key": keys["read"]}
            assert client.get("/api/report", headers=read).status_code == 200
            assert client.get("/metrics", headers=read).status_code == 200
            assert client.post("/v2/models/guarded/infer", json=BODY, headers=read).status_code == 403
            assert client.get("/api/keys", headers=read).status_code == 403
            deployer = bearer(keys["deployer"])
            assert client.put("/api/models/guarded/aliases/production", json={"version": 1},
                              headers=deployer).status_code == 200
            events = client.get("/api/models/guarded/events", headers=deployer).json()
            assert events[0]["kind"] == "alias.set" and events[0]["actor"] == "key:deployer-key"
            listed = client.get("/api/keys", headers=bearer(admin)).json()
            assert {k["name"] for k in listed} == {"ops", "deployer-key", "predict-key", "read-key"}
            assert all("key" not in k and "hash" not in k for k in listed)  # never shown again
        env = {**os.environ, "MODEL_MANAGER_API_KEY": admin}
        revoked = subprocess.run([CLI, "--url", server.url, "keys", "revoke", "predict-key"],
                                 capture_output=True, text=True, env=env, check=True)
        assert "revoked" in revoked.stdout
        after = httpx.post(f"{server.url}/v2/models/guarded/infer", json=BODY, headers=predict)
        assert after.status_code == 401
        denied = server.cli("ls", check=False)  # the CLI without a key
        assert denied.returncode == 1 and "API key" in denied.stderr
    finally:
        server.stop()


@pytest.mark.parametrize("host", ["192.0.2.1"])
def test_a_public_address_without_keys_is_refused(tmp_path: Path, host: str) -> None:
    result = subprocess.run([CLI, "serve", "--host", host, "--port", "1", "--data-dir",
                             str(tmp_path / "var")], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "without an API key" in result.stdout + result.stderr and "--insecure" in result.stderr
