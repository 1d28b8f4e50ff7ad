"""Owners told by webhook, through the real server and a real receiver: a signed test message
from the CLI, an unhealthy version (a failing golden probe) told once per cooldown, a receiver
that fails retried until it takes the message, one that hangs never holding up predictions,
and secrets never shown back."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IrisFiles
from tests.e2e.test_telemetry_and_health import IRIS_ROW
from tests.onnx_models import sqrt_model
from tests.support import ServerProcess, eventually, free_port, push

SECRET = "s3cr3t-for-tests"


class Receiver:
    """A webhook receiver on a free port: records every POST; answers 500 to the first
    ``failures`` of them; holds each answer while ``hold`` is set."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.failures = 0
        self.hold = threading.Event()
        self.holding = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append({"headers": dict(self.headers.items()), "body": body,
                                          "path": self.path})
                while receiver.hold.is_set():
                    receiver.holding.set()
                    receiver.hold.wait(0.05)
                    if not receiver.hold.is_set():
                        break
                status = 500 if receiver.failures > 0 else 204
                receiver.failures -= 1
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def messages(self, path: str, event: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(r["body"]) | {"_headers": r["headers"]} for r in self.received
                 if r["path"] == path]
        return [m for m in found if event is None or m["event"] == event]

    def close(self) -> None:
        self.hold.clear()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("notify") / "var", "--guard-interval", "0.3",
                           "--notify-retry", "0.3s", "--health-window", "2s")
    yield server
    server.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def signed(message: dict[str, Any], raw: bytes, secret: str) -> bool:
    headers = {k.lower(): v for k, v in message["_headers"].items()}
    stamp = headers["x-model-manager-timestamp"].encode()
    digest = hmac.new(secret.encode(), stamp + b"." + raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-model-manager-signature"], f"sha256={digest}")


def test_a_signed_test_message_from_the_cli(server: ServerProcess, client: httpx.Client,
                                            receiver: Receiver, iris: IrisFiles) -> None:
    assert push(client, "scored", iris.onnx).status_code == 201
    hook = f"{receiver.url}/scored"
    server.cli("settings", "scored", "--owner", "team-risk", "--notify", hook,
               "--notify-secret", SECRET)
    shown = client.get("/api/models/scored/settings").json()
    assert shown["owner"] == "team-risk"
    assert shown["notify"] == [{"url": hook, "events": shown["notify"][0]["events"],
                                "secret": True}]
    assert SECRET not in client.get("/api/models/scored/events").text

    printed = server.cli("notify", "test", "scored").stdout
    assert hook in printed and "delivered" in printed
    (message,) = receiver.messages("/scored", "test")
    raw = next(r["body"] for r in receiver.received if r["path"] == "/scored")
    assert signed(message, raw, SECRET) and not signed(message, raw, "another secret")
    assert message["model"] == "scored" and message["owner"] == "team-risk"
    assert message["link"].endswith("/dashboard/models/scored")
    log = client.get("/api/models/scored/notifications").json()["notifications"]
    assert [(n["event"], n["status"], n["attempts"]) for n in log] == [("test", "delivered", 1)]

    # keeping the secret: the settings as GET shows them go back unchanged
    kept = client.patch("/api/models/scored/settings", json={"notify": shown["notify"]})
    assert kept.status_code == 200 and kept.json()["notify"][0]["secret"] is True
    server.cli("notify", "test", "scored")
    latest = receiver.messages("/scored", "test")[-1]
    raw = [r["body"] for r in receiver.received if r["path"] == "/scored"][-1]
    assert signed(latest, raw, SECRET)


def test_an_unhealthy_version_is_told_once_per_cooldown_and_retried(
        server: ServerProcess, client: httpx.Client, receiver: Receiver, iris: IrisFiles) -> None:
    wrong = {"probe": {"inputs": IRIS_ROW["inputs"], "expected": {"label": [2]}}}
    hook = f"{receiver.url}/probed"
    push(client, "probed", iris.onnx, metadata=json.dumps(wrong))
    settings = {"owner": "team-a", "notify": [{"url": hook, "events": ["unhealthy"]}]}
    assert client.patch("/api/models/probed/settings", json=settings).status_code == 200
    receiver.failures = 2  # the first two attempts fail: retried after 0.3 s, then 0.6 s
    assert client.post("/v2/models/probed/infer", json=IRIS_ROW).status_code == 200  # loads it

    eventually(lambda: receiver.messages("/probed", "unhealthy"), timeout=60,
               what="the unhealthy message")
    first = client.get("/api/models/probed/notifications").json()["notifications"][0]
    assert first["event"] == "unhealthy" and first["version"] == 1
    assert "golden probe failed" in first["reason"]

    def delivered() -> bool:
        rows = client.get("/api/models/probed/notifications").json()["notifications"]
        return rows[0]["status"] == "delivered"

    eventually(delivered, timeout=60, what="the retried delivery")
    row = client.get("/api/models/probed/notifications").json()["notifications"][0]
    assert row["attempts"] == 3 and row["last_error"] is None
    assert len(receiver.messages("/probed", "unhealthy")) == 3  # two failed tries, then taken

    # a second unhealthy version within the cooldown: nobody is told again
    push(client, "probed", iris.onnx, metadata=json.dumps(wrong))
    assert client.post("/v2/models/probed/versions/2/infer", json=IRIS_ROW).status_code == 200

    def told_of_version_2() -> bool:  # its health seen by the watch, and nothing left queued
        log = client.get("/api/models/probed/notifications").json()
        return log["health_seen"].get("2") == "unhealthy" and log["queued"] == 0

    eventually(told_of_version_2, what="version 2 seen unhealthy")
    server.cli("notify", "log", "probed")  # the CLI reads the log too
    rows = client.get("/api/models/probed/notifications").json()["notifications"]
    assert [r["event"] for r in rows] == ["unhealthy"]


def sqrt_body(values: list[float]) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": values}]}


def test_nan_answers_are_told_once_and_the_fix_once(client: httpx.Client, receiver: Receiver,
                                                    tmp_path: Path) -> None:
    push(client, "rooted", sqrt_model(tmp_path / "sqrt.onnx"))
    hook = f"{receiver.url}/rooted"
    assert client.patch("/api/models/rooted/settings", json={
        "notify": [{"url": hook, "events": ["unhealthy", "recovered"]}]}).status_code == 200
    for _ in range(6):  # negative inputs: the model answers NaN
        assert client.post("/v2/models/rooted/infer", json=sqrt_body([-1, 4, 9, 16])
                           ).status_code == 500
    eventually(lambda: receiver.messages("/rooted", "unhealthy"), what="the unhealthy message")
    for _ in range(4):  # still answering NaN: nobody is told again
        client.post("/v2/models/rooted/infer", json=sqrt_body([-4, 4, 9, 16]))

    def fixed_and_told() -> bool:  # only good inputs now, until the window forgets the bad
        assert client.post("/v2/models/rooted/infer", json=sqrt_body([1, 4, 9, 16])
                           ).status_code == 200
        return bool(receiver.messages("/rooted", "recovered"))

    eventually(fixed_and_told, what="the recovered message")
    (unhealthy,) = receiver.messages("/rooted", "unhealthy")
    (recovered,) = receiver.messages("/rooted", "recovered")
    assert "invalid outputs" in unhealthy["reason"] and "NaN" in unhealthy["reason"]
    assert recovered["reason"] == "healthy again (was unhealthy)"


def test_a_hanging_receiver_never_holds_up_predictions(server: ServerProcess,
                                                      client: httpx.Client, receiver: Receiver,
                                                      iris: IrisFiles) -> None:
    push(client, "patient", iris.onnx)
    assert client.patch("/api/models/patient/settings",
                        json={"notify": [{"url": f"{receiver.url}/patient"}]}).status_code == 200
    receiver.hold.set()
    try:
        sender = threading.Thread(target=lambda: server.cli("notify", "test", "patient",
                                                            check=False))
        sender.start()
        assert receiver.holding.wait(10), "the test message never reached the receiver"
        answers = [client.post("/v2/models/patient/infer", json=IRIS_ROW).status_code
                   for _ in range(50)]
        assert receiver.hold.is_set() and answers == [200] * 50  # answered while it hangs
    finally:
        receiver.hold.clear()
    sender.join(30)
    rows = client.get("/api/models/patient/notifications").json()["notifications"]
    assert rows and rows[0]["event"] == "test"


def test_bad_targets_are_refused(client: httpx.Client, iris: IrisFiles) -> None:
    push(client, "strict", iris.onnx)
    for notify, message in ((["not a target"], "a notify target is"),
                            ([{"url": "ftp://x"}], "http(s) URL"),
                            ([{"url": "http://x", "events": ["bored"]}], "events are a list of"),
                            ([{"url": "http://x", "secret": ""}], "secret is a non-empty")):
        refused = client.patch("/api/models/strict/settings", json={"notify": notify})
        assert refused.status_code == 400 and message in refused.json()["error"], refused.text
    untargeted = client.post("/api/models/strict/notifications/test")
    assert untargeted.status_code == 409 and "no notify targets" in untargeted.json()["error"]

