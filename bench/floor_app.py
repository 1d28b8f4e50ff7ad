"""The floor: the least a Python HTTP server does for a V2 infer call, with no model behind it.

A raw ASGI app (no framework). POST .../infer reads the body, parses it as JSON, touches
``inputs[0].data`` and answers a constant V2 response; GET /v2/health/* and .../ready answer 200.
Anything slower than this on the same core is framework, validation and model cost.

    uvicorn floor_app:app --http httptools --loop uvloop --no-access-log --workers 1
    granian --interface asgi --workers 1 floor_app:app
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ANSWER = orjson.dumps({"model_name": "floor", "model_version": "1", "outputs": [
    {"name": "label", "shape": [1], "datatype": "INT64", "data": [0]}]})
READY = b'{"ready":true}'
BAD_REQUEST = b'{"error":"not a V2 infer request"}'
NOT_FOUND = b'{"error":"not found"}'


async def app(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        status, body = await _answer(scope, receive)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def _answer(scope: Message, receive: Receive) -> tuple[int, bytes]:
    path, method = scope["path"], scope["method"]
    if method == "POST" and path.endswith("/infer"):
        try:
            orjson.loads(await _body(receive))["inputs"][0]["data"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            return 400, BAD_REQUEST
        return 200, ANSWER
    if method == "GET" and (path.startswith("/v2/health/") or path.endswith("/ready")):
        return 200, READY
    return 404, NOT_FOUND


async def _body(receive: Receive) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
