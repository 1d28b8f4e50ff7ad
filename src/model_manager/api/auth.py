"""API keys on every request (but the health checks and the dashboard's files), once any key
exists; and the keys API."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from model_manager.access import GRANTS, KeyRing, permission_for
from model_manager.api.bodies import json_object
from model_manager.errors import InvalidInput
from model_manager.registry import acting_as


class ApiKeyAuth:
    """401 without a valid key (``Authorization: Bearer`` or ``X-API-Key``), 403 when its role
    does not allow the request; the key's name then acts for the request (audit events)."""

    def __init__(self, app: ASGIApp, keys: KeyRing) -> None:
        self.app = app
        self._keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        needed = (permission_for(scope["method"], scope["path"])
                  if self._keys.enforced and scope["type"] == "http" else None)
        if needed is None:
            await self.app(scope, receive, send)
            return
        presented = _presented_key(scope)
        key = self._keys.authenticate(presented) if presented else None
        if key is None:
            await _refuse(send, 401, "this server needs an API key: send it as 'Authorization: "
                                     "Bearer <key>' or 'X-API-Key: <key>'")
            return
        if needed not in GRANTS[key.role]:
            await _refuse(send, 403, f"key {key.name!r} has role {key.role}, which may not "
                                     f"{scope['method']} {scope['path']}")
            return
        token = acting_as.set(f"key:{key.name}")
        try:
            await self.app(scope, receive, send)
        finally:
            acting_as.reset(token)


def keys_routes(keys: KeyRing) -> APIRouter:
    api = APIRouter(prefix="/api/keys")

    @api.post("", status_code=201)
    async def create(request: Request) -> dict[str, Any]:
        body = json_object(await request.body())
        name, role = body.get("name"), body.get("role")
        if not isinstance(name, str) or not isinstance(role, str):
            raise InvalidInput('a key is {"name": "svc-a", "role": "predict"}')
        key, secret = await anyio.to_thread.run_sync(keys.create, name, role)
        return {**key.to_json(), "key": secret}

    @api.get("")
    async def list_keys() -> list[dict[str, Any]]:
        return [k.to_json() for k in keys.list()]

    @api.delete("/{name}")
    async def revoke(name: str) -> dict[str, Any]:
        return (await anyio.to_thread.run_sync(keys.revoke, name)).to_json()

    return api


def _presented_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return str(value[7:].decode("latin-1")).strip()
        if name == b"x-api-key":
            return str(value.decode("latin-1")).strip()
    return None


async def _refuse(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

