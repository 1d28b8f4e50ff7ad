"""What an outside probe with admin, predict and read keys sent, against the real server: huge
integers, deep nesting, versions that cannot exist, names with a trailing newline or a look-alike,
uploads whose loader errors would name server paths. Each gets a 4xx that says what is wrong;
nothing counts against a model, and the canary guard does not move."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.onnx_models import failing_model, offset_model
from tests.support import ServerProcess, eventually, push

BIG = "9" * 4301
"""One digit past what Python converts from text."""
X = [1.0, 2.0, 3.0, 4.0]


@dataclass
class Probe:
    server: ServerProcess
    admin: dict[str, str]
    predict: dict[str, str]
    read: dict[str, str]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    """A server with keys; model ``probed`` has versions 1 (production) and 2."""
    folder = tmp_path_factory.mktemp("probe")
    server = ServerProcess(folder / "var", "--guard-interval", "0.2")
    try:
        admin = server.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip()
        headers = bearer(admin)

        def key(role: str) -> dict[str, str]:
            created = httpx.post(f"{server.url}/api/keys", json={"name": f"{role}-key", "role": role},
                                 headers=headers)
            return bearer(created.json()["key"])

        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            for offset in (1.0, 2.0):
                model = offset_model(folder / f"m{offset}.onnx", offset)
                assert push(client, "probed", model).status_code == 201
            client.put("/api/models/probed/aliases/production", json={"version": 1})
        yield Probe(server, headers, key("predict"), key("read"))
    finally:
        server.stop()


@pytest.fixture
def admin(probe: Probe) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=probe.server.url, headers=probe.admin, timeout=60) as client:
        yield client


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert isinstance(message, str) and len(message) < 400  # says what, without echoing it all
    return message


def infer_body(data: str = "1, 2, 3, 4", shape: str = "1, 4") -> str:
    return f'{{"inputs": [{{"name": "x", "datatype": "FP32", "shape": [{shape}], "data": [{data}]}}]}}'


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v2/models/probed/infer", infer_body(data=f"{BIG}, 2, 3, 4")),
    ("POST", "/v2/models/probed/versions/2/infer", infer_body(shape=f"{BIG}, 4")),
    ("PUT", "/api/models/probed/traffic", f'{{"routes": [{{"version": 1, "weight": {BIG}}}]}}'),
    ("POST", "/api/cleanup", f'{{"dry_run": true, "window": {BIG}}}'),
    ("POST", "/api/keys", f'{{"name": "k", "role": "read", "n": {BIG}}}'),
    ("POST", "/api/models/probed/outcomes", f'[{{"id": "a", "value": {BIG}}}]'),
    ("PATCH", "/api/models/probed/settings", f'{{"prediction_log_rate": {BIG}}}'),
    ("POST", "/v2/repository/index", f'{{"ready": {BIG}}}'),
    ("PUT", "/api/models/probed/aliases/staging", f'{{"version": {BIG}}}'),
    ("POST", "/api/models/probed/promote", f'{{"version": -{BIG}}}'),
    ("PUT", "/api/models/probed/traffic", '{"routes": [{"version": 1, "weight": 100}], '
     f'"shadows": [{{"version": 2, "sample_rate": 1{"0" * 400}}}]}}'),
])
def test_an_oversized_integer_is_400_on_every_json_route(admin: httpx.Client, method: str,
                                                         path: str, body: str) -> None:
    response = admin.request(method, path, content=body.encode())
    assert "integer of 4" in error_of(response, 400) and "2**64" in response.json()["error"]


@pytest.mark.parametrize(("method", "path"), [
    ("PUT", "/api/models/probed/aliases/staging"), ("PUT", "/api/models/probed/traffic"),
    ("POST", "/api/cleanup"), ("POST", "/api/models/probed/outcomes"),
    ("PATCH", "/api/models/probed/settings"), ("POST", "/v2/repository/index"),
    ("POST", "/api/keys"), ("POST", "/v2/models/probed/infer")])
def test_deep_nesting_is_400_on_every_json_route(admin: httpx.Client, method: str,
                                                 path: str) -> None:
    for depth in (100_000, 1_000, 33):
        nested = "[" * depth + "]" * depth
        for body in (nested, f'{{"version": {nested}, "routes": {nested}}}'):
            response = admin.request(method, path, content=body.encode())
            assert "levels deep" in error_of(response, 400) or path.endswith("/infer")


def test_deep_infer_parameters_and_data_are_400(probe: Probe) -> None:
    nested: list[object] = []
    for _ in range(40):
        nested = [nested]
    parameters = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X}],
                  "parameters": {"p": nested}}
    texts = (b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": '
             + b"[" * 900 + b'"a"' + b"]" * 900 + b"}]}")
    with httpx.Client(base_url=probe.server.url, headers=probe.predict, timeout=60) as client:
        for response in (client.post("/v2/models/probed/infer", json=parameters),
                         client.post("/v2/models/probed/infer", content=texts)):
            assert "levels deep" in error_of(response, 400)


@pytest.mark.parametrize(("method", "suffix"), [
    ("GET", ""), ("DELETE", ""), ("PUT", "/pin"), ("DELETE", "/pin"), ("POST", "/archive"),
    ("POST", "/unarchive")])
def test_a_version_that_cannot_exist_is_404_on_every_management_route(
        admin: httpx.Client, method: str, suffix: str) -> None:
    for version in ("9" * 4300, "9" * 4301, "9" * 20, "18446744073709551616"):
        response = admin.request(method, f"/api/models/probed/versions/{version}{suffix}")
        assert "has no version" in error_of(response, 404)


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("GET", "/ready"),
                                                ("POST", "/infer")])
def test_a_version_that_cannot_exist_is_404_on_every_v2_route(probe: Probe, method: str,
                                                              suffix: str) -> None:
    path = f"/v2/models/probed/versions/{'9' * 4300}{suffix}"
    response = httpx.request(method, f"{probe.server.url}{path}", headers=probe.predict,
                             content=infer_body().encode())
    assert "has no version 999" in error_of(response, 404)


@pytest.mark.parametrize("path", ["/api/models/probed/aliases/staging",
                                  "/api/models/probed/promote"])
def test_a_long_version_string_in_a_body_is_404(admin: httpx.Client, path: str) -> None:
    method = "PUT" if "aliases" in path else "POST"
    response = admin.request(method, path, json={"version": "9" * 5000})
    assert "has no version" in error_of(response, 404)
    assert admin.get("/api/models/probed").json()["aliases"] == {"production": 1}


@pytest.mark.parametrize(("metadata", "expected"), [
    (f'{{"deep": {"[" * 100_000 + "]" * 100_000}}}', "metadata nests"),
    (f'{{"deep": {"[" * 33 + "]" * 33}}}', "metadata nests"),
    (f'{{"owner": {BIG}}}', "metadata holds an integer of 4301 digits"),
])
def test_upload_metadata_too_deep_or_too_big_is_400(admin: httpx.Client, tmp_path: Path,
                                                    metadata: str, expected: str) -> None:
    model = offset_model(tmp_path / "m.onnx", 3.0)
    response = push(admin, "probed", model, metadata=metadata)
    assert expected in error_of(response, 400)
    assert len(admin.get("/api/models/probed").json()["versions"]) == 2


def test_loader_errors_name_no_server_path(admin: httpx.Client, probe: Probe) -> None:
    for name, fmt in (("junk.onnx", None), ("junk.bin", "onnx"), ("junk.skops", None)):
        data = {"format": fmt} if fmt else {}
        response = admin.post("/api/models/junk/versions", files={"file": (name, b"not a model")},
                              data=data)
        message = error_of(response, 400)
        assert str(probe.server.data_dir) not in message and "/tmp" not in message
        assert ".part" not in message and "upload-" not in message


@pytest.mark.parametrize("alias", ["production%0A", "production%0D", "production%00",
                                   "producti%D0%BEn",  # a Cyrillic o
                                   "%EF%BD%90roduction",  # a fullwidth p
                                   "production%E2%80%8B"])  # a zero-width space
def test_alias_names_are_matched_whole(admin: httpx.Client, alias: str) -> None:
    response = admin.put(f"/api/models/probed/aliases/{alias}", json={"version": 2})
    assert "invalid alias" in error_of(response, 400)
    assert admin.get("/api/models/probed").json()["aliases"] == {"production": 1}


@pytest.mark.parametrize("name", ["k\n", "k\r", "k\x00", "k\u0435y", "\uff4bey",
                                  "k\u200b"])
def test_key_names_are_matched_whole(admin: httpx.Client, name: str) -> None:
    response = admin.post("/api/keys", json={"name": name, "role": "read"})
    assert "invalid key name" in error_of(response, 400)
    assert all(k["name"].isascii() and k["name"].isprintable()
               for k in admin.get("/api/keys").json())


@pytest.mark.parametrize("name", ["probed%0A", "probed%0D", "probed%00", "pr%D0%BEbed"])
def test_model_names_are_matched_whole(admin: httpx.Client, tmp_path: Path, name: str) -> None:
    response = push(admin, name, offset_model(tmp_path / "m.onnx", 3.0))
    if response.status_code == 404:  # a newline ends the route's path pattern: no such endpoint
        assert "no such endpoint" in error_of(response, 404)
    else:
        assert "invalid model name" in error_of(response, 400)
    assert {m["name"] for m in admin.get("/api/models").json()} <= {"probed", "control"}


def test_hostile_inputs_from_a_predict_key_do_not_move_the_canary(probe: Probe,
                                                                  tmp_path: Path) -> None:
    """``probed`` and ``control`` run 50/50 canaries under the same guard; the control's canary
    really fails. Once the guard has taken the control's canary out, it has judged ``probed``'s
    too, after every hostile request: that one keeps its weight and its health."""
    url, guard = probe.server.url, {"max_error_rate": 0.05, "min_requests": 20}
    with httpx.Client(base_url=url, headers=probe.admin, timeout=60) as admin:
        push(admin, "control", offset_model(tmp_path / "good.onnx", 1.0))
        push(admin, "control", failing_model(tmp_path / "bad.onnx"))
        admin.put("/api/models/control/aliases/production", json={"version": 1})
        split = {"routes": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]}
        for name in ("probed", "control"):
            assert admin.patch(f"/api/models/{name}/settings",
                               json={"auto_rollback": guard}).status_code == 200
            assert admin.put(f"/api/models/{name}/traffic", json=split).status_code == 200
    hostile = [infer_body(data=f"{BIG}, 2, 3, 4"), infer_body(shape=f"{BIG}, 4"),
               infer_body(data="[" * 100_000 + "]" * 100_000)]
    with httpx.Client(base_url=url, headers=probe.predict, timeout=60) as client:
        for i in range(30):
            response = client.post("/v2/models/probed/versions/2/infer",
                                   content=hostile[i % 3].encode())
            assert response.status_code == 400, response.text
        for _ in range(30):
            client.post("/v2/models/control/versions/2/infer", json={"inputs": [
                {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X}]})
    with httpx.Client(base_url=url, headers=probe.admin, timeout=60) as admin:

        def weights(name: str) -> dict[int, int]:
            routes = admin.get(f"/api/models/{name}/traffic").json()["policy"]["routes"]
            return {r["version"]: r["weight"] for r in routes}

        eventually(lambda: weights("control") == {1: 100, 2: 0}, what="the guard runs")
        assert weights("probed") == {1: 50, 2: 50}
        events = admin.get("/api/models/probed/events").json()
        assert not any(e["actor"] == "auto-rollback" for e in events)
        health = admin.get("/api/models/probed/health").json()
        version = next(v for v in health["versions"] if v["version"] == 2)
        assert version["status"] == "healthy" and version["error_rate"] == 0, version
        metrics = admin.get("/metrics").text
    counted = re.search(r'model_manager_requests_total\{model="probed",outcome="bad_input",'
                        r'version="2"\} ([0-9.]+)', metrics)
    assert counted is not None and float(counted.group(1)) >= 30, metrics
    assert 'model="probed",outcome="runtime_error"' not in metrics


def test_each_failed_request_is_logged_at_most_once_with_a_short_path(probe: Probe) -> None:
    """The requests above were the caller's mistakes: none of them wrote a traceback."""
    log = probe.server.log()
    assert "Traceback" not in log and "Exception in ASGI application" not in log
    assert "9" * 300 not in log
