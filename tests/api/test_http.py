"""The server's HTTP protocol writes each response at once: what one task writes leaves when the
event loop turns, in order, large bodies without waiting, and nothing held is lost on close.
Then the real server, over a raw socket: pipelined requests answered in order, a large answer
whole, and connection: close honoured."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import numpy as np
import pytest

from model_manager.api.http import FLUSH_AT, JoinedWrites
from tests.onnx_models import offset_model
from tests.support import ServerProcess, push

Pair = tuple[JoinedWrites, socket.socket]
"""The server's end of a connection, and the client's."""


def _received(peer: socket.socket) -> bytes:
    """What has arrived on ``peer`` so far, without waiting."""
    chunks = []
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks) + b"<EOF>"
        chunks.append(chunk)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    return "asyncio", {"use_uvloop": True}  # the server's loop


@pytest.fixture
async def pair(anyio_backend: object) -> AsyncIterator[Pair]:
    """Our end of a socket pair as the server's transport, and the peer's end; both closed
    afterwards, also when the test fails (an open transport would hold the loop's close)."""
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    joined = JoinedWrites(transport, loop)  # type: ignore[arg-type]
    try:
        yield joined, peer
    finally:
        joined.close()
        peer.close()


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0.01)


@pytest.mark.anyio
async def test_writes_of_one_turn_leave_together_and_in_order(pair: Pair) -> None:
    joined, peer = pair
    joined.write(b"HTTP/1.1 200 OK\r\n\r\n")
    joined.write(bytearray(b"body"))
    assert _received(peer) == b""  # held until the loop turns
    assert joined.get_write_buffer_size() == 23
    await _settle()
    assert _received(peer) == b"HTTP/1.1 200 OK\r\n\r\nbody"
    joined.write(b"second")
    await _settle()
    assert _received(peer) == b"second"


@pytest.mark.anyio
async def test_a_large_body_goes_out_without_waiting_for_the_loop(pair: Pair) -> None:
    joined, peer = pair
    joined.write(b"head ")
    joined.write(b"x" * FLUSH_AT)
    await asyncio.sleep(0)  # the socket's own write, not the held one
    arrived = _received(peer)
    await _settle()
    arrived += _received(peer)
    assert arrived == b"head " + b"x" * FLUSH_AT


@pytest.mark.anyio
async def test_closing_writes_what_is_held_first(pair: Pair) -> None:
    joined, peer = pair
    joined.write(b"last words")
    joined.close()
    await _settle()
    assert _received(peer) == b"last words<EOF>"


@pytest.fixture(scope="module")
def offset_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("http")
    server = ServerProcess(folder / "var")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert push(client, "offset", offset_model(folder / "offset.onnx", 1.0)).status_code == 201
    yield server
    server.stop()


def _request(method: str, path: str, body: bytes = b"", close: bool = False) -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n" + ("connection: close\r\n" if close else ""))
    return head.encode() + b"\r\n" + body


def _responses(raw: bytes) -> list[tuple[int, bytes]]:
    """Status and body of each response in ``raw`` (all with content-length)."""
    found = []
    while raw:
        head, rest = raw.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        length = next(int(line.split(":")[1]) for line in lines
                      if line.lower().startswith("content-length:"))
        found.append((int(lines[0].split()[1]), rest[:length]))
        raw = rest[length:]
    return found


def _infer_body(rows: int) -> bytes:
    x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    return json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 4],
                                   "data": x.ravel().tolist()}]}).encode()


def test_the_server_answers_pipelined_requests_in_order_and_large_answers_whole(
        offset_server: ServerProcess) -> None:
    rows = 20_000  # an answer of over half a megabyte, past FLUSH_AT
    requests = [_request("POST", "/v2/models/offset/infer", _infer_body(1)),
                _request("GET", "/v2/health/live"),
                _request("POST", "/v2/models/offset/infer", _infer_body(rows)),
                _request("POST", "/v2/models/nope/infer", _infer_body(1)),
                _request("GET", "/v2/health/ready", close=True)]
    with socket.create_connection(("127.0.0.1", offset_server.port), timeout=60) as conn:
        conn.sendall(b"".join(requests))
        raw = b""
        while chunk := conn.recv(1 << 20):  # until the server closes, as the last one asked
            raw += chunk
    answers = _responses(raw)
    assert [status for status, _ in answers] == [200, 200, 200, 404, 200]
    small, large = json.loads(answers[0][1]), json.loads(answers[2][1])
    assert small["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]
    assert len(answers[2][1]) > 8 * FLUSH_AT
    assert large["outputs"][0]["data"] == (np.arange(rows * 4, dtype=np.float32) + 1).tolist()
    assert json.loads(answers[1][1]) == {"live": True}
    assert "nope" in json.loads(answers[3][1])["error"]

