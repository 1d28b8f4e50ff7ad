"""What the registry returns: plain immutable records, free of SQL."""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime
from typing import Any

from model_manager.errors import NotFound
from model_manager.runtimes.signature import Signature

MAX_VERSION_DIGITS = 19
"""Version numbers are SQL BIGINTs: a reference with more digits names no version."""


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
    compiled_sha256: str | None = None
    """The blob of the ONNX twin that serves this scikit-learn version, if any."""

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "version": self.number, "sha256": self.sha256,
            "size": self.size, "format": self.format, "signature": self.signature.to_json(),
            "metadata": self.metadata, "created_at": self.created_at.isoformat(),
            "archived": self.archived, "aliases": list(self.aliases), "pinned": self.pinned,
            "archived_at": self.archived_at.isoformat() if self.archived_at else None,
            "compiled_sha256": self.compiled_sha256,
        }


@dataclasses.dataclass(frozen=True)
class ModelRecord:
    """A model with its versions (oldest first) and its aliases."""

    name: str
    created_at: datetime
    versions: tuple[VersionRecord, ...]
    aliases: dict[str, int]

    @functools.cached_property
    def latest(self) -> VersionRecord | None:
        """The newest unarchived version (worked out once: every request without a version
        asks for it)."""
        return next((v for v in reversed(self.versions) if not v.archived), None)

    def resolve(self, ref: str | int | None) -> VersionRecord:
        """The version ``ref`` names: a number, an alias, or (None) the default route:
        ``production``, else the newest unarchived version. Raises NotFound."""
        if ref is None or ref == "":
            if "production" in self.aliases:
                ref = "production"
            elif self.latest is None:
                raise NotFound(f"model {self.name!r} has no unarchived version")
            else:
                return self.latest
        number = self._number(ref)
        for version in self.versions:
            if version.number == number:
                return version
        raise NotFound(f"model {self.name!r} has no version {_shown(number)}")

    def _number(self, ref: str | int) -> int:
        if isinstance(ref, int):
            return ref
        if ref.isascii() and ref.isdigit():
            if len(ref) > MAX_VERSION_DIGITS:  # no such version; and int() of it may not be cheap
                raise NotFound(f"model {self.name!r} has no version {_shown(ref)}")
            return int(ref)
        if ref in self.aliases:
            return self.aliases[ref]
        raise NotFound(f"model {self.name!r} has no version or alias {_shown(ref)!r}")

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


def _shown(ref: str | int) -> str:
    """A version reference as an error message shows it: long ones cut."""
    text = str(ref)
    return text if len(text) <= 40 else f"{text[:24]}... ({len(text)} characters)"
