"""What the registry returns: plain immutable records, free of SQL."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from model_manager.runtimes.signature import Signature


@dataclasses.dataclass(frozen=True)
class VersionRecord:
    """One immutable version of a model."""

    model: str
    number: int
    sha256: str
    size: int
    format: str
    signature: Signature
    metadata: dict[str, Any]
    created_at: datetime
    archived: bool
    aliases: tuple[str, ...] = ()
    pinned: bool = False
    archived_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "version": self.number, "sha256": self.sha256,
            "size": self.size, "format": self.format, "signature": self.signature.to_json(),
            "metadata": self.metadata, "created_at": self.created_at.isoformat(),
            "archived": self.archived, "aliases": list(self.aliases), "pinned": self.pinned,
            "archived_at": self.archived_at.isoformat() if self.archived_at else None,
        }


@dataclasses.dataclass(frozen=True)
class ModelRecord:
    """A model with its versions (oldest first) and its aliases."""

    name: str
    created_at: datetime
    versions: tuple[VersionRecord, ...]
    aliases: dict[str, int]

    @property
    def latest(self) -> VersionRecord | None:
        live = [v for v in self.versions if not v.archived]
        return live[-1] if live else None

    def to_json(self, with_versions: bool = True) -> dict[str, Any]:
        latest = self.latest
        data: dict[str, Any] = {
            "name": self.name, "created_at": self.created_at.isoformat(),
            "latest_version": latest.number if latest else None,
            "version_count": len(self.versions), "aliases": self.aliases,
        }
        if with_versions:
            data["versions"] = [v.to_json() for v in self.versions]
        return data


@dataclasses.dataclass(frozen=True)
class EventRecord:
    """One audited change to a model."""

    model: str
    kind: str
    details: dict[str, Any]
    actor: str | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "kind": self.kind, "details": self.details,
                "actor": self.actor, "created_at": self.created_at.isoformat()}
