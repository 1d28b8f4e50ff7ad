"""``Fleet``: the servers (replicas) sharing one registry, each known by its heartbeat.

Every replica writes its row in ``replicas`` every ``HEARTBEAT`` seconds: its address, start
time, memory budget, the bytes its loaded versions hold and which versions those are. A replica
whose row is older than ``GONE_AFTER`` seconds is gone (it stopped, or cannot reach the
database); its row is deleted an hour later by whichever replica beats then, and at once when it
stops cleanly. ``GET /api/replicas``, ``model-manager replicas`` and the dashboard show the rows;
``GET /api/models/{name}`` says which replicas hold each version.

With ``serve --workers``, the leading worker beats for the whole server, with what every worker
holds, under the id of the server's run folder (the same id whichever worker leads).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from model_manager.clock import iso
from model_manager.registry import Registry
from model_manager.registry import schema as t

HEARTBEAT = 3.0
"""Seconds between a replica's heartbeats."""
GONE_AFTER = 10.0
"""Seconds without a heartbeat after which a replica is gone (three missed beats)."""
FORGET_AFTER = timedelta(hours=1)

Holding = tuple[str, int, int]
"""(model, version, bytes) of a loaded version."""


@dataclasses.dataclass(frozen=True)
class Replica:
    id: str
    address: str
    started_at: datetime
    heartbeat_at: datetime
    budget_bytes: int
    used_bytes: int
    versions: list[Holding]

    def to_json(self, this: str) -> dict[str, Any]:
        return {"id": self.id, "address": self.address, "this": self.id == this,
                "started_at": iso(self.started_at.timestamp()),
                "heartbeat_at": iso(self.heartbeat_at.timestamp(), "milliseconds"),
                "budget_bytes": self.budget_bytes, "used_bytes": self.used_bytes,
                "versions": [{"model": m, "version": v, "bytes": b} for m, v, b in self.versions]}


class Fleet:
    def __init__(self, registry: Registry, address: str, budget: int,
                 holdings: Callable[[], list[Holding]], replica_id: str | None = None) -> None:
        self.registry = registry
        self.id = replica_id or uuid.uuid4().hex[:12]
        self.address = address
        self._budget = budget
        self._holdings = holdings
        self._started_at = registry.now()

    def beat(self) -> None:
        """Write this replica's row (blocking: call from a thread)."""
        held = sorted(self._holdings())
        now = self.registry.now()
        values = {"address": self.address, "started_at": self._started_at, "heartbeat_at": now,
                  "budget_bytes": self._budget, "used_bytes": sum(h[2] for h in held),
                  "versions": [list(h) for h in held]}
        with self.registry.writing() as conn:
            updated = conn.execute(t.replicas.update().where(t.replicas.c.id == self.id)
                                   .values(**values)).rowcount
            if not updated:
                conn.execute(t.replicas.insert().values(id=self.id, **values))
            conn.execute(t.replicas.delete().where(t.replicas.c.heartbeat_at
                                                   < now - FORGET_AFTER))

    def replicas(self) -> list[Replica]:
        """The replicas that beat within ``GONE_AFTER`` seconds, by address."""
        since = self.registry.now() - timedelta(seconds=GONE_AFTER)
        with self.registry.engine.connect() as conn:
            rows = conn.execute(sa.select(t.replicas).where(t.replicas.c.heartbeat_at >= since)
                                .order_by(t.replicas.c.address, t.replicas.c.id)).all()
        return [Replica(r.id, r.address, r.started_at, r.heartbeat_at, r.budget_bytes,
                        r.used_bytes, [(m, int(v), int(b)) for m, v, b in r.versions])
                for r in rows]

    def holders(self) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """Which live replicas hold each version: {(model, version): [{id, address, bytes}]}."""
        found: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for replica in self.replicas():
            for model, version, size in replica.versions:
                found.setdefault((model, version), []).append(
                    {"id": replica.id, "address": replica.address, "bytes": size})
        return found

    def leave(self) -> None:
        """Remove this replica's row (a clean stop)."""
        with self.registry.writing() as conn:
            conn.execute(t.replicas.delete().where(t.replicas.c.id == self.id))


def address_of(host: str, port: int) -> str:
    """Where other machines reach this server: the host name when it listens everywhere."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"{host}:{port}"


def replica_id(run_folder: str | None) -> str | None:
    """The replica id shared by the workers of one server (from their run folder), if any."""
    return os.path.basename(run_folder).removeprefix("model-manager-") if run_folder else None
