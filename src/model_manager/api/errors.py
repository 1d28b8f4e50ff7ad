"""Domain errors to HTTP: one table, looked up along the exception's MRO."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from model_manager import errors

log = logging.getLogger(__name__)

STATUS: dict[type[errors.ModelManagerError], int] = {
    errors.SignatureMismatch: 422,
    errors.InvalidInput: 400,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
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


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.ModelManagerError, _domain)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _bug)


async def _domain(request: Request, exc: errors.ModelManagerError) -> JSONResponse:
    headers = None
    if isinstance(exc, errors.Unavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    status = status_of(exc)
    if status >= 500:  # the server could not serve; client mistakes are not logged
        log.warning("request failed: status=%d method=%s path=%s error=%s", status,
                    request.method, request.url.path, exc.message)
    return error_response(status, exc.message, headers)


async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}"
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
    return error_response(400, f"invalid request: {problems}")


async def _bug(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request failed: status=500 method=%s path=%s error=unhandled %s",
                  request.method, request.url.path, type(exc).__name__)
    return error_response(500, f"internal error ({type(exc).__name__}); see the server log")
