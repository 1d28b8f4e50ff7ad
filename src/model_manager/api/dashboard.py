"""The dashboard: ``GET /`` and its static files under ``/dashboard/``.

The page holds no data: its scripts read the JSON management API, as the CLI does, so the files
themselves need no API key (see ``access.permission_for``). Everything is served from the
package; nothing is fetched from elsewhere, and the content security policy says so.
"""

from __future__ import annotations

import re
from pathlib import Path

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import FileResponse

from model_manager.errors import NotFound

ASSETS = Path(__file__).parent.parent / "dashboard"

_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_ASSET_NAME = re.compile(r"[a-z][a-z0-9-]*\.(js|css|svg)")
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # revalidate (ETag), so an upgraded server serves its own files
}


def dashboard_routes() -> APIRouter:
    api = APIRouter(include_in_schema=False)

    @api.api_route("/", methods=["GET", "HEAD"])
    async def page() -> FileResponse:
        return FileResponse(ASSETS / "index.html", media_type="text/html", headers=_HEADERS)

    @api.api_route("/dashboard/{name}", methods=["GET", "HEAD"])
    async def asset(name: str) -> FileResponse:
        path = ASSETS / name
        if not _ASSET_NAME.fullmatch(name) or not await anyio.to_thread.run_sync(path.is_file):
            raise NotFound(f"the dashboard has no file {name!r}")
        return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_HEADERS)

    return api
