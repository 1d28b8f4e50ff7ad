"""permission_for: what each request needs once the server has API keys; the key ring's rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from model_manager.access import KeyRing, permission_for
from model_manager.errors import Conflict, InvalidName
from model_manager.registry import Registry
from model_manager.registry import schema as t


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
    ("POST", "/v1/models/iris:predict", "predict"),
    ("POST", "/v1/models/iris/versions/2:predict", "predict"),
    ("GET", "/v1/models/iris", "metadata"),
    ("GET", "/v1/models", "metadata"),
    ("POST", "/v1/models/iris", "deploy"),  # no such endpoint; not a prediction
    ("GET", "/api/keys", "admin"),
])
def test_permission_for(method: str, path: str, needed: str | None) -> None:
    assert permission_for(method, path) == needed


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry.from_url(f"sqlite:///{tmp_path}/r.db")
    registry.migrate()
    yield registry
    registry.close()


def test_the_last_active_admin_key_cannot_be_revoked(registry: Registry) -> None:
    keys = KeyRing(registry)
    keys.create("ops", "admin")
    keys.create("deploy", "deployer")
    keys.revoke("deploy")
    with pytest.raises(Conflict, match=r"last active admin key.*keys create --data-dir"):
        keys.revoke("ops")
    keys.create("second", "admin")
    keys.revoke("ops")
    with pytest.raises(Conflict):
        keys.revoke("second")
    assert [k.name for k in keys.list() if k.revoked_at is None] == ["second"]


def test_once_a_key_has_existed_requests_need_one_for_good(registry: Registry) -> None:
    keys = KeyRing(registry)
    keys.refresh()
    assert not keys.enforced
    keys.create("ops", "admin")
    with registry.writing() as conn:  # every key revoked, behind the API's back
        conn.execute(t.api_keys.update().values(revoked_at=datetime.now(UTC)))
    keys.refresh()
    assert keys.enforced and keys.authenticate("mm_x_y") is None
    fresh = KeyRing(registry)  # a restart: revoked keys are keys that have existed
    fresh.refresh()
    assert fresh.enforced
    with registry.writing() as conn:
        conn.execute(t.api_keys.delete())
    keys.refresh()
    assert keys.enforced  # this process saw keys: an emptied table does not open it


@pytest.mark.parametrize("name", ["ops\n", "ops\r", "o\x00ps", "\u043eps", "\uff4fps", "ops\u200b",
                                  "OPS", "", "x" * 64])
def test_key_names_are_matched_whole(registry: Registry, name: str) -> None:
    with pytest.raises(InvalidName, match="invalid key name"):
        KeyRing(registry).create(name, "read")
