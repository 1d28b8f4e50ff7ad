"""The v2 infer endpoint as a bare ASGI app in front of the framework.

``POST /v2/models/{name}[/versions/{version}]/infer`` is the hot path, so it is matched by
splitting the path rather than by the framework's router, and answered with two ASGI messages:
a request costs the prediction and little else. Every other request goes on to ``app``. Errors
are the same JSON with the same statuses as everywhere else (``errors.STATUS``).
"""

from __future__ import annotations

import logging

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from model_manager import errors
from model_manager.api.codec import HEADER_LENGTH_KEY, TensorLimits, decode_request, encode_response
from model_manager.api.errors import BUG_MESSAGE, log_bug, log_failure, shown_path, status_of
from model_manager.api.limits import too_large_message
from model_manager.serving import InferenceRequest, PredictionRouter
from model_manager.serving.shadow import ShadowJob

log = logging.getLogger(__name__)


class InferEndpoint:
    def __init__(self, app: ASGIApp, router: PredictionRouter, max_request_size: int,
                 limits: TensorLimits) -> None:
        self.app = app
        self._router = router
        self._limit = max_request_size
        self._limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = _infer_target(scope["path"]) if scope["type"] == "http" else None
        if target is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            status, body, headers, after = await self._infer(scope, receive, *target)
        except errors.ModelManagerError as exc:
            status, body, headers, after = _domain_error(scope, exc)
        except Exception as exc:
            log_bug("POST", scope["path"], exc)
            status, body, headers, after = _error(500, BUG_MESSAGE.format(type(exc).__name__))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if after is not None:
            await self._router.dispatch(after)

    async def _infer(self, scope: Scope, receive: Receive, name: str,
                     version: str | None) -> tuple[int, bytes, list[tuple[bytes, bytes]], ShadowJob | None]:
        content_length, header_length, routing_key = _headers(scope)
        raw = await _read_body(receive, content_length, self._limit)
        request, result, job = await self._router.predict(
            name, version, lambda: _decoded(scope, raw, header_length, self._limits),
            routing_key=routing_key)
        body, headers = encode_response(result, request)
        return 200, body, headers, job


def _decoded(scope: Scope, raw: bytes, header_length: str | None,
             limits: TensorLimits) -> InferenceRequest:
    """The request body decoded. Whatever fails while decoding it is the caller's bad input, so
    it never counts against the model (its health, the canary guard): an unexpected exception
    is logged as the bug it is, and answered as a body the server could not decode."""
    try:
        return decode_request(raw, header_length, limits)
    except errors.ModelManagerError:
        raise
    except Exception as exc:
        log.error("request failed: status=400 method=POST path=%s error=undecodable body, "
                  "unhandled %s", shown_path(scope["path"]), type(exc).__name__, exc_info=exc)
        raise errors.InvalidInput(f"the request body could not be decoded "
                                  f"({type(exc).__name__})") from None


_TARGETS: dict[str, tuple[str, str | None]] = {}
"""Infer paths already split (``_infer_target``): a server answers a few paths many times.
At most ``_MAX_TARGETS`` of at most 256 characters are kept; others are split every time."""
_MAX_TARGETS = 4096


def _infer_target(path: str) -> tuple[str, str | None] | None:
    """(model, version or None) for an infer path, else None."""
    target = _TARGETS.get(path)
    if target is None:
        target = _split_infer_path(path)
        if target is not None and len(_TARGETS) < _MAX_TARGETS and len(path) <= 256:
            _TARGETS[path] = target
    return target


def _split_infer_path(path: str) -> tuple[str, str | None] | None:
    if not path.startswith("/v2/models/") or not path.endswith("/infer"):
        return None
    parts = path[len("/v2/models/"):-len("/infer")].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
        return parts[0], parts[2]
    return None


async def _read_body(receive: Receive, content_length: bytes | None, limit: int) -> bytes:
    if content_length is not None and content_length.isdigit() and (
            len(content_length) > 18 or int(content_length) > limit):
        raise errors.TooLarge(too_large_message(limit, "--max-request-size"))
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise errors.InvalidInput("the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise errors.TooLarge(too_large_message(limit, "--max-request-size"))
        if not message.get("more_body", False):  # (most bodies come in one message)
            return b"".join([*chunks, chunk]) if chunks else chunk
        chunks.append(chunk)


def _headers(scope: Scope) -> tuple[bytes | None, str | None, str | None]:
    """Content-Length, Inference-Header-Content-Length and X-Routing-Key, in one pass (the
    last of each, if sent twice; the HTTP parser refuses two Content-Lengths)."""
    content_length = header_length = routing_key = None
    for key, value in scope["headers"]:
        if key == b"content-length":
            content_length = value
        elif key == HEADER_LENGTH_KEY:
            header_length = value.decode("latin-1")
        elif key == b"x-routing-key":
            routing_key = value.decode("latin-1")
    return content_length, header_length, routing_key


def _domain_error(scope: Scope, exc: errors.ModelManagerError
                  ) -> tuple[int, bytes, list[tuple[bytes, bytes]], None]:
    status = status_of(exc)
    log_failure(status, "POST", scope["path"], exc.message)
    status, body, headers, _ = _error(status, exc.message)
    if isinstance(exc, errors.Unavailable):
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    return status, body, headers, None


def _error(status: int, message: str) -> tuple[int, bytes, list[tuple[bytes, bytes]], None]:
    return status, orjson.dumps({"error": message}), [(b"content-type", b"application/json")], None
