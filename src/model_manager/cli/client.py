"""A small HTTP client for the server's management and v2 APIs, used by the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ServerClient:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = 60.0,
                 api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach the server at {self.url} ({exc}); "
                              "is `model-manager serve` running?") from exc
        if response.status_code >= 400:
            raise ApiError(response.status_code, _error_text(response))
        return response.json() if response.content else None

    def push(self, name: str, path: Path, fmt: str | None, metadata: str | None,
             compile_twin: bool = True) -> Any:
        data = {k: v for k, v in (("format", fmt), ("metadata", metadata)) if v}
        if not compile_twin:
            data["compile"] = "false"
        with open(path, "rb") as f:
            return self.request("POST", f"/api/models/{name}/versions",
                                files={"file": (path.name, f)}, data=data)

    def model_metadata(self, name: str, version: str | None) -> Any:
        return self.request("GET", _v2_model_path(name, version))

    def infer(self, name: str, version: str | None, body: dict[str, Any]) -> Any:
        return self.request("POST", _v2_model_path(name, version) + "/infer", json=body)


def _v2_model_path(name: str, version: str | None) -> str:
    return f"/v2/models/{name}" + (f"/versions/{version}" if version else "")


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"
