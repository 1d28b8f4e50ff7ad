"""API keys and roles through the real server and CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.onnx_models import offset_model
from tests.support import CLI, ServerProcess, eventually, push

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


def test_revoking_the_last_admin_key_cannot_open_the_server(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "var")
    try:
        admin = bearer(server.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip())
        with httpx.Client(base_url=server.url, timeout=60) as client:
            read = client.post("/api/keys", json={"name": "reader", "role": "read"}, headers=admin)
            assert client.delete("/api/keys/reader", headers=admin).status_code == 200
            refused = client.delete("/api/keys/ops", headers=admin)
            assert refused.status_code == 409, refused.text
            message = refused.json()["error"]
            assert "last active admin key" in message and "model-manager keys create" in message
            assert "--data-dir" in message
            assert client.get("/api/keys", headers=admin).status_code == 200  # ops still works
            assert client.get("/api/keys").status_code == 401
            assert client.post("/api/keys", json={"name": "x", "role": "admin"}).status_code == 401
            assert client.get("/api/models", headers=bearer(read.json()["key"])).status_code == 401

            # Every admin key lost: one made offline, straight into the data dir, gets back in.
            made = subprocess.run([CLI, "keys", "create", "--data-dir", str(server.data_dir),
                                   "--role", "admin", "--name", "rescue"],
                                  capture_output=True, text=True, timeout=60, check=True)
            rescue = bearer(made.stdout.strip())

            def rescue_works() -> bool:
                return client.get("/api/keys", headers=rescue).status_code == 200

            eventually(rescue_works, what="the server picks up the offline key")
            assert client.delete("/api/keys/ops", headers=rescue).status_code == 200
            assert client.delete("/api/keys/rescue", headers=rescue).status_code == 409
            assert client.get("/api/keys").status_code == 401
            assert client.get("/api/keys", headers=admin).status_code == 401  # ops is revoked
    finally:
        server.stop()


def test_a_key_made_offline_holds_from_the_next_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    made = subprocess.run([CLI, "keys", "create", "--data-dir", str(data_dir), "--role", "admin",
                           "--name", "ops"], capture_output=True, text=True, timeout=60)
    assert made.returncode != 0 and "registry.db" in made.stderr  # not a server's data dir yet
    ServerProcess(data_dir).stop()  # a first start creates the registry
    made = subprocess.run([CLI, "keys", "create", "--data-dir", str(data_dir), "--role", "admin",
                           "--name", "ops"], capture_output=True, text=True, timeout=60, check=True)
    assert made.stdout.startswith("mm_")
    server = ServerProcess(data_dir)
    try:
        response = httpx.get(f"{server.url}/api/models")
        assert response.status_code == 401
    finally:
        server.stop()
