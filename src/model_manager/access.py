"""API keys and roles.

A key reads ``mm_<id>_<secret>``; the registry keeps its id, name, role and a salted SHA-256 of
the secret, never the secret. Checking a key looks its id up in memory (the keys are re-read
every few seconds and after each change here) and compares hashes in constant time.

Roles: ``admin`` may do everything; ``deployer`` may read and change models (uploads, aliases,
traffic, promotions, cleanup); ``predict`` may run inference and read model metadata; ``read`` may
read everything but keys. While no key has ever existed, the server is open; once one has, every
request but the health checks and the dashboard's static files needs one, for good: revoking keys
never opens the server again, and the last active admin key cannot be revoked (``RECOVERY`` says
how to get back in when every admin key is lost).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from model_manager.errors import Conflict, InvalidInput, NotFound
from model_manager.registry import Registry
from model_manager.registry import schema as t
from model_manager.registry.names import check_key_name

ROLES = ("admin", "deployer", "predict", "read")
GRANTS = {"admin": {"admin", "deploy", "predict", "read", "metadata"},
          "deployer": {"deploy", "predict", "read", "metadata"},
          "predict": {"predict", "metadata"}, "read": {"read", "metadata"}}
"""What each role may do: the permissions a request can need."""
RECOVERY = ("on the server's machine, `model-manager keys create --data-dir <its data dir> "
            "--role admin --name <name>` adds an admin key without the server (or --db-url for "
            "its database); the server picks it up within seconds")
"""How to get an admin key back when none works: straight into the registry, offline."""


@dataclasses.dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: str
    salt: str
    hash: str
    created_at: datetime
    revoked_at: datetime | None = None

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.hash, _hash(self.salt, secret))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "id": self.id,
                "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


class KeyRing:
    """The registry's keys, in memory for the per-request check."""

    def __init__(self, registry: Registry, clock: Callable[[], float] = time.monotonic) -> None:
        self._registry = registry
        self._clock = clock
        self._keys: dict[str, ApiKey] = {}
        self._read_at = -1e9
        self._has_had_keys = False

    @property
    def enforced(self) -> bool:
        """Whether requests need a key: some key, active or revoked, has existed (once true, it
        stays true for this process, whatever later happens to the keys table)."""
        return self._has_had_keys

    def refresh(self) -> None:
        """Re-read the keys (blocking: call from a thread)."""
        with self._registry.engine.connect() as conn:
            rows = conn.execute(sa.select(t.api_keys)).all()
        self._keys = {r.id: ApiKey(r.id, r.name, r.role, r.salt, r.hash, r.created_at,
                                   r.revoked_at) for r in rows}
        self._has_had_keys = self._has_had_keys or bool(self._keys)
        self._read_at = self._clock()

    def is_stale(self, seconds: float) -> bool:
        return self._clock() - self._read_at > seconds

    def authenticate(self, presented: str) -> ApiKey | None:
        """The active key ``presented`` is, or None."""
        prefix, _, rest = presented.partition("_")
        key_id, _, secret = rest.partition("_")
        key = self._keys.get(key_id) if prefix == "mm" else None
        if key is None or key.revoked_at is not None or not key.matches(secret):
            return None
        return key

    def create(self, name: str, role: str) -> tuple[ApiKey, str]:
        """A new key and its secret form, which is shown once (blocking)."""
        check_key_name(name)
        if role not in ROLES:
            raise InvalidInput(f"role {role!r} is not one of {', '.join(ROLES)}")
        key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_hex(16)
        key = ApiKey(key_id, name, role, salt, _hash(salt, secret), datetime.now(UTC))
        try:
            with self._registry.writing() as conn:
                conn.execute(t.api_keys.insert().values(**dataclasses.asdict(key)))
        except sa.exc.IntegrityError:
            raise Conflict(f"a key named {name!r} exists; revoke it or pick another name") from None
        self.refresh()
        return key, f"mm_{key_id}_{secret}"

    def revoke(self, name: str) -> ApiKey:
        """Revoke the active key ``name`` (blocking). The last active admin key is refused
        (Conflict): without one, nobody could manage keys any more."""
        with self._registry.writing() as conn:
            admins = conn.execute(sa.select(t.api_keys.c.name).where(
                t.api_keys.c.role == "admin", t.api_keys.c.revoked_at.is_(None))
                .with_for_update()).scalars().all()  # concurrent revokes take turns (PostgreSQL)
            if list(admins) == [name]:
                raise Conflict(f"key {name!r} is the last active admin key; revoking it would "
                               f"leave nobody able to manage keys. Create another admin key "
                               f"first. If every admin key is ever lost: {RECOVERY}")
            done = conn.execute(t.api_keys.update().where(
                t.api_keys.c.name == name, t.api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC)))
        if done.rowcount == 0:
            raise NotFound(f"no active key named {name[:80]!r}")
        self.refresh()
        return next(k for k in self._keys.values() if k.name == name)

    def list(self) -> list[ApiKey]:
        return sorted(self._keys.values(), key=lambda k: k.created_at)


def permission_for(method: str, path: str) -> str | None:
    """What a request needs: None (health checks, the dashboard's files), read, predict, deploy
    or admin."""
    if path.startswith("/v2/health/"):
        return None
    if method in ("GET", "HEAD") and (path == "/" or path.startswith("/dashboard/")):
        return None  # the page and its scripts hold no data; what they read from /api needs a key
    if path.startswith("/api/keys"):
        return "admin"
    if path.startswith("/v2/models/") and method == "POST" and path.endswith("/infer"):
        return "predict"
    if path.startswith("/v1/models/") and method == "POST" and path.endswith(":predict"):
        return "predict"
    if method in ("GET", "HEAD") and (path.startswith("/v1/models/") or path == "/v1/models"):
        return "metadata"
    if path.startswith("/v2/repository/") and path.endswith(("/load", "/unload")):
        return "deploy"
    if method in ("GET", "HEAD") and (path.startswith("/v2/models/") or path == "/v2"):
        return "metadata"
    if method in ("GET", "HEAD") or path == "/v2/repository/index":
        return "read"
    return "deploy"


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()
