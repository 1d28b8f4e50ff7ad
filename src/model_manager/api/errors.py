"""Domain errors to HTTP: one table, looked up along the exception's MRO.

Every failed request is logged once, here (or, for the infer endpoint, in ``api/infer.py``):
client mistakes not at all, the server's failures as one line, bugs with their traceback; paths
in log lines are cut to ``LOGGED_PATH`` characters.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_manager import errors

log = logging.getLogger(__name__)

STATUS: dict[type[errors.ModelManagerError], int] = {
    errors.SignatureMismatch: 422,
    errors.InvalidInput: 400,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.InsufficientStorage: 507,
    errors.InvalidArtifact: 400,
    errors.Saturated: 429,
    errors.Unavailable: 503,
    errors.PredictionTimeout: 504,
    errors.ModelError: 500,
}


def status_of(exc: errors.ModelManagerError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


LOGGED_PATH = 200
"""Characters of a request's path that a log line or an error message shows."""


def shown_path(path: str) -> str:
    """``path`` as log lines and messages show it: cut to ``LOGGED_PATH`` characters."""
    return path if len(path) <= LOGGED_PATH else f"{path[:LOGGED_PATH]}... ({len(path)} characters)"


def log_failure(status: int, method: str, path: str, message: str) -> None:
    """One line for a request the server could not serve; client mistakes (4xx) are not logged."""
    if status >= 500:
        log.warning("request failed: status=%d method=%s path=%s error=%s", status, method,
                    shown_path(path), message[:1000])


def log_bug(method: str, path: str, exc: BaseException) -> None:
    """A request that failed with an unexpected exception, with its traceback: logged once."""
    log.error("request failed: status=500 method=%s path=%s error=unhandled %s", method,
              shown_path(path), type(exc).__name__, exc_info=exc)


BUG_MESSAGE = "internal error ({}); see the server log"


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.ModelManagerError, _domain)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_middleware(ServerErrors)


class ServerErrors:
    """Answers an unexpected exception with a JSON 500 and logs it once. (A handler for
    ``Exception`` would run in Starlette's outermost middleware, which re-raises it to the HTTP
    server: a second traceback in the log and a dropped connection.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            log_bug(scope["method"], scope["path"], exc)
            if not started:  # else the client sees the response cut short
                await _send_bug(send, exc)


async def _send_bug(send: Send, exc: Exception) -> None:
    body = orjson.dumps({"error": BUG_MESSAGE.format(type(exc).__name__)})
    await send({"type": "http.response.start", "status": 500,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _domain(request: Request, exc: errors.ModelManagerError) -> JSONResponse:
    headers = None
    if isinstance(exc, errors.Unavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    status = status_of(exc)
    log_failure(status, request.method, request.url.path, exc.message)
    return error_response(status, exc.message, headers)


async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {shown_path(request.url.path)}"
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
    return error_response(400, f"invalid request: {problems}")

