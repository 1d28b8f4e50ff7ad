"""Management API under ``/api``: models, versions, aliases, events."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, StrictInt
from starlette.datastructures import UploadFile

from model_manager.catalog import Catalog, parse_metadata
from model_manager.errors import InvalidInput
from model_manager.registry import check_model_name
from model_manager.serving import ModelCache
from model_manager.store import iter_file


class AliasBody(BaseModel):
    version: StrictInt | str


def management_routes(catalog: Catalog, cache: ModelCache) -> APIRouter:
    api = APIRouter(prefix="/api")
    registry = catalog.registry

    @api.get("/models")
    async def list_models() -> list[dict[str, Any]]:
        models = await anyio.to_thread.run_sync(registry.list_models)
        return [m.to_json(with_versions=False) for m in models]

    @api.get("/models/{name}")
    async def get_model(name: str) -> dict[str, Any]:
        model = await anyio.to_thread.run_sync(registry.get_model, name)
        return model.to_json()

    @api.post("/models/{name:path}/versions", status_code=201)
    async def upload_version(name: str, request: Request) -> dict[str, Any]:
        check_model_name(name)  # before reading a byte of the body
        async with request.form(max_files=1, max_fields=10) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidInput("the upload needs a multipart 'file' field with the model")
            fmt, metadata = _text(form.get("format")), parse_metadata(_text(form.get("metadata")))
            version = await anyio.to_thread.run_sync(lambda: catalog.add_version(
                name, iter_file(upload.file), filename=upload.filename or "", format=fmt or None,
                metadata=metadata))
        return version.to_json()

    @api.get("/models/{name}/versions/{version}")
    async def get_version(name: str, version: str) -> dict[str, Any]:
        record = await anyio.to_thread.run_sync(registry.get_version, name, version)
        return record.to_json()

    @api.delete("/models/{name}/versions/{version}")
    async def delete_version(name: str, version: str) -> dict[str, Any]:
        record = await anyio.to_thread.run_sync(catalog.delete_version, name, version)
        await cache.unload(name, record.number)
        return {"deleted": record.to_json()}

    @api.put("/models/{name}/aliases/{alias}")
    async def set_alias(name: str, alias: str, body: AliasBody) -> dict[str, Any]:
        record = await anyio.to_thread.run_sync(registry.set_alias, name, alias, body.version)
        return {"model": name, "alias": alias, "version": record.number}

    @api.delete("/models/{name}/aliases/{alias}", status_code=204)
    async def delete_alias(name: str, alias: str) -> Response:
        await anyio.to_thread.run_sync(registry.delete_alias, name, alias)
        return Response(status_code=204)

    @api.get("/models/{name}/events")
    async def events(name: str) -> list[dict[str, Any]]:
        records = await anyio.to_thread.run_sync(registry.list_events, name)
        return [e.to_json() for e in records]

    return api


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidInput("form fields other than 'file' must be text")
