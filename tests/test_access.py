"""permission_for: what each request needs once the server has API keys."""

from __future__ import annotations

import pytest

from model_manager.access import permission_for


@pytest.mark.parametrize(("method", "path", "needed"), [
    ("GET", "/v2/health/ready", None),
    ("GET", "/", None),  # the dashboard's page and files hold no data
    ("HEAD", "/", None),
    ("GET", "/dashboard/app.js", None),
    ("POST", "/", "deploy"),
    ("GET", "/api/cache", "read"),  # what the dashboard reads needs a key
    ("GET", "/api/usage/recent", "read"),
    ("GET", "/api/models/iris/usage/recent", "read"),
    ("POST", "/api/models/iris/promote", "deploy"),
    ("POST", "/v2/models/iris/infer", "predict"),
    ("GET", "/v2/models/iris", "metadata"),
    ("GET", "/api/keys", "admin"),
])
def test_permission_for(method: str, path: str, needed: str | None) -> None:
    assert permission_for(method, path) == needed
