"""CPU per v2 infer request inside the app, with no sockets: the hot path's own cost.

Builds the real app (``create_app``) on a fresh data dir, runs its lifespan, uploads a logistic
regression of 20 features (served through its compiled ONNX twin) and awaits the ASGI app
directly with one row (JSON data, or with --body binary the binary tensor data extension), on
uvloop, --requests times per round. Prints the process CPU time per request of each round and
their median. What this leaves out (HTTP parsing, the socket) is the floor's share;
``bench/peers.py`` measures the whole server against it.

    .venv/bin/python bench/hot_path.py [--requests 5000] [--rounds 5] [--body json|binary]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import skops.io as sio
import uvloop
from sklearn.linear_model import LogisticRegression

ROW = np.random.default_rng(0).random(20).tolist()
BODY = json.dumps({"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 20],
                               "data": ROW}]}, separators=(",", ":")).encode()
BINARY_HEADER = json.dumps({"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 20],
                                        "parameters": {"binary_data_size": 160}}]},
                           separators=(",", ":")).encode()
BINARY = BINARY_HEADER + np.asarray(ROW, dtype="<f8").tobytes()
"""The same row with the binary tensor data extension (the JSON header, then the raw bytes)."""
PATH = "/v2/models/logreg/infer"


async def measure(requests: int, rounds: int, binary: bool) -> list[float]:
    from model_manager.app import create_app
    from model_manager.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-hot-path-"))
    os.environ.update({"MODEL_MANAGER_DATA_DIR": str(work / "var"),
                       "MODEL_MANAGER_GRPC_PORT": "0", "MODEL_MANAGER_LOG_LEVEL": "warning"})
    app = create_app(Settings.load())
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await to_app.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"},
                                        "state": {}}, to_app.get, from_app.put))
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://bench") as client:
        model = work / "logreg.skops"
        x = np.random.default_rng(1).random((200, 20))
        sio.dump(LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(np.int64)), model)
        with open(model, "rb") as f:
            pushed = await client.post("/api/models/logreg/versions",
                                       files={"file": ("logreg.skops", f)})
        assert pushed.status_code == 201, pushed.text
        compiled = pushed.json()["metadata"].get("compiled") or {}
        assert compiled.get("format") == "onnx", compiled  # served as the peers bench serves it
        answered = await client.post(PATH, content=BODY)
        assert answered.status_code == 200, answered.text
    body, headers = BODY, [(b"host", b"bench"), (b"content-type", b"application/json")]
    if binary:
        body, headers = BINARY, [(b"host", b"bench"), (b"content-type", b"application/octet-stream"),
                                 (b"inference-header-content-length",
                                  str(len(BINARY_HEADER)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": PATH, "raw_path": PATH.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 2), "state": {},
             "headers": [*headers, (b"content-length", str(len(body)).encode())]}
    message = {"type": "http.request", "body": body, "more_body": False}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return message

    async def send(sent: dict[str, Any]) -> None:
        if sent["type"] == "http.response.start":
            statuses.append(sent["status"])

    for _ in range(1000):  # warm
        await app(dict(scope), receive, send)
    per_request = []
    for _ in range(rounds):
        statuses.clear()
        started = time.process_time()
        for _ in range(requests):
            await app(dict(scope), receive, send)
        per_request.append((time.process_time() - started) / requests * 1e6)
        assert statuses == [200] * requests, set(statuses)
    await to_app.put({"type": "lifespan.shutdown"})
    await from_app.get()
    await lifespan
    return per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--body", choices=("json", "binary"), default="json",
                        help="the row as JSON data, or with the binary tensor data extension")
    args = parser.parse_args()
    rounds = uvloop.run(measure(args.requests, args.rounds, args.body == "binary"))
    print("CPU us per infer request, by round: " + ", ".join(f"{r:.1f}" for r in rounds))
    print(f"median {statistics.median(rounds):.1f} us")


if __name__ == "__main__":  # the model processes' fork server imports this module again
    main()
