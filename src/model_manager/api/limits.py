"""A request body limit, enforced before the body is read where Content-Length says it all,
and while it streams otherwise (chunked uploads)."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_manager.sizes import human_size

_UPLOAD = re.compile(r"/api/models/.+/versions/?", re.DOTALL)


class BodySizeLimit:
    """413 for bodies over ``max_request_size``, or ``max_upload_size`` on the upload route."""

    def __init__(self, app: ASGIApp, max_request_size: int, max_upload_size: int) -> None:
        self.app = app
        self.max_request_size = max_request_size
        self.max_upload_size = max_upload_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_upload = scope["method"] == "POST" and _UPLOAD.fullmatch(scope["path"]) is not None
        limit = self.max_upload_size if is_upload else self.max_request_size
        setting = "--max-upload-size" if is_upload else "--max-request-size"
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _reject(send, limit, setting)
            return
        state = {"received": 0, "exceeded": False}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["exceeded"] = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not state["exceeded"]:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["exceeded"]:
                raise
        if state["exceeded"]:
            await _reject(send, limit, setting)


def too_large_message(limit: int, setting: str) -> str:
    return f"request body is over the limit of {human_size(limit)} (the server's {setting})"


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length" and value.isdigit():
            return int(value) if len(value) <= 18 else 2**63  # past any limit, without int()
    return None


async def _reject(send: Send, limit: int, setting: str) -> None:
    body = json.dumps({"error": too_large_message(limit, setting)}).encode()
    headers: list[Any] = [(b"content-type", b"application/json"),
                          (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
