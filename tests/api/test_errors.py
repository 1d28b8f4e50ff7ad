"""A bug in a route is a JSON 500, logged once with a short path; a client mistake is not logged."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from model_manager.api.errors import install_error_handlers
from model_manager.errors import InvalidInput


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/{anything:path}")
    async def route(anything: str) -> None:
        if anything.startswith("bad"):
            raise InvalidInput("that is not right")
        raise ZeroDivisionError("a bug")

    return app


async def get(path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path)


@pytest.mark.anyio
async def test_a_bug_is_one_log_record_with_a_cut_path(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        response = await get("/boom/" + "x" * 5000)
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (ZeroDivisionError); see the server log"}
    failures = [r for r in caplog.records if r.exc_info or "request failed" in r.getMessage()]
    assert len(failures) == 1
    line = failures[0].getMessage()
    assert "status=500" in line and "ZeroDivisionError" in line and "(5006 characters)" in line
    assert len(line) < 400


@pytest.mark.anyio
async def test_a_client_mistake_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        response = await get("/bad")
    assert response.status_code == 400 and response.json() == {"error": "that is not right"}
    assert not [r for r in caplog.records if "request failed" in r.getMessage()]
