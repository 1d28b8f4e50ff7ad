"""``Registry``: what exists (models, versions, aliases, events) in one SQL database.

Methods are synchronous and may block on the database: call them from a worker thread.
Every write runs in one transaction, so a crash leaves either all of it or none.
"""

from __future__ import annotations

import contextvars
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

from model_manager.errors import Conflict, NotFound
from model_manager.registry import schema as t
from model_manager.registry.names import check_alias_name, check_model_name
from model_manager.registry.records import EventRecord, ModelRecord, VersionRecord
from model_manager.registry.status import RegistryStatus
from model_manager.runtimes.signature import Signature

_MIGRATIONS = Path(__file__).parent / "migrations"


acting_as: contextvars.ContextVar[str | None] = contextvars.ContextVar("acting_as", default=None)
"""Who makes the changes in this context (an API key's name); audit events record it when
a change names no actor of its own."""


def create_registry_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys, a busy timeout and BEGIN IMMEDIATE
    for writes (so concurrent writers queue instead of failing)."""
    if not url.startswith("sqlite"):
        connect_args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
        return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL",
                       "busy_timeout=30000"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


WRITTEN_BATCH_RETENTION = timedelta(days=2)
"""How long the id of a written batch is kept (a retry comes within seconds)."""


class Registry:
    """Queries and changes over the registry's tables. An error that means the database cannot
    be reached or written is raised as ``Unreachable`` (see ``RegistryStatus``)."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        """What "now" is for the times the registry stores."""
        self.generation = 0
        """Counts this process's changes to models, versions, aliases and policies (and those
        another worker process announced); caches of them compare it to know they are stale."""
        self.on_change: Callable[[], None] = lambda: None
        """Called after each such change (the server's other workers are told)."""
        self.status = RegistryStatus()
        sa.event.listen(engine, "handle_error", self.status.on_error)
        sa.event.listen(engine, "after_cursor_execute",
                        lambda *_: self.status.on_statement())

    @classmethod
    def from_url(cls, url: str, clock: Callable[[], float] = time.time) -> Registry:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return cls(create_registry_engine(url), clock)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def migrate(self) -> None:
        """Bring the schema up to the newest migration."""
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with self._write() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()

    # ---- reads -------------------------------------------------------------------------------

    def is_empty(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(t.models)).scalar_one() == 0

    def list_models(self) -> list[ModelRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.models).order_by(t.models.c.name)).all()
            return [self._model(conn, row) for row in rows]

    def get_model(self, name: str) -> ModelRecord:
        with self.engine.connect() as conn:
            return self._model(conn, self._model_row(conn, name))

    def get_version(self, name: str, ref: str | int | None) -> VersionRecord:
        """The version ``ref`` names: a number, an alias, or (None) the default route:
        ``production``, else the newest unarchived version."""
        return self.get_model(name).resolve(ref)

    def get_policy(self, name: str) -> dict[str, Any] | None:
        """The model's traffic policy as stored, or None (requests then follow ``production``)."""
        with self.engine.connect() as conn:
            query = (sa.select(t.traffic_policies.c.policy)
                     .join(t.models, t.models.c.id == t.traffic_policies.c.model_id)
                     .where(t.models.c.name == name))
            value = conn.execute(query).scalar()
            return dict(value) if value is not None else None

    def policy_since(self, name: str) -> datetime | None:
        """When the model's traffic policy was last set (None: it has none)."""
        with self.engine.connect() as conn:
            query = (sa.select(t.traffic_policies.c.updated_at)
                     .join(t.models, t.models.c.id == t.traffic_policies.c.model_id)
                     .where(t.models.c.name == name))
            return conn.execute(query).scalar()

    def get_settings(self, name: str) -> dict[str, Any]:
        """The model's monitoring settings as stored (empty: the server's defaults)."""
        with self.engine.connect() as conn:
            model_id = self._model_row(conn, name).id
            query = sa.select(t.model_settings.c.settings).where(
                t.model_settings.c.model_id == model_id)
            return dict(conn.execute(query).scalar() or {})

    def all_settings(self) -> dict[str, dict[str, Any]]:
        """Every model's stored settings, by model name."""
        with self.engine.connect() as conn:
            query = sa.select(t.models.c.name, t.model_settings.c.settings).join(
                t.models, t.models.c.id == t.model_settings.c.model_id)
            return {row.name: dict(row.settings) for row in conn.execute(query)}

    def is_blob_referenced(self, sha256: str) -> bool:
        with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(t.versions).where(
                (t.versions.c.sha256 == sha256) | (t.versions.c.compiled_sha256 == sha256))
            return conn.execute(query).scalar_one() > 0

    def list_events(self, name: str, limit: int = 100) -> list[EventRecord]:
        with self.engine.connect() as conn:
            row = self._model_row(conn, name)
            query = (sa.select(t.events).where(t.events.c.model_id == row.id)
                     .order_by(t.events.c.id.desc()).limit(limit))
            return [EventRecord(name, e.kind, e.details, e.actor, e.created_at)
                    for e in conn.execute(query)]

    # ---- writes ------------------------------------------------------------------------------

    def create_version(self, name: str, *, sha256: str, size: int, format: str,
                       signature: Signature, metadata: dict[str, Any],
                       actor: str | None = None,
                       compiled_sha256: str | None = None) -> VersionRecord:
        """Register a new version, creating the model on its first upload."""
        check_model_name(name)
        now = self.now()
        with self._write() as conn:
            model_id = self._ensure_model(conn, name, now)
            conn.execute(t.models.update().where(t.models.c.id == model_id)
                         .values(last_version=t.models.c.last_version + 1))
            number = conn.execute(sa.select(t.models.c.last_version)
                                  .where(t.models.c.id == model_id)).scalar_one()
            conn.execute(t.versions.insert().values(
                model_id=model_id, number=number, sha256=sha256, size=size, format=format,
                signature=signature.to_json(), metadata=metadata, created_at=now, archived=False,
                compiled_sha256=compiled_sha256))
            self._record(conn, model_id, "version.created",
                         {"version": number, "sha256": sha256, "format": format}, actor)
        return self.get_version(name, number)

    def delete_version(self, name: str, ref: str | int, actor: str | None = None,
                       reason: str | None = None) -> VersionRecord:
        """Remove a version's row. Refused (Conflict) while an alias points at it."""
        version = self.get_version(name, ref)
        with self._write() as conn:
            model_id = self._model_row(conn, name).id
            version_id = conn.execute(sa.select(t.versions.c.id).where(
                t.versions.c.model_id == model_id,
                t.versions.c.number == version.number)).scalar()
            if version_id is None:
                raise NotFound(f"model {name!r} has no version {version.number}")
            aliases = conn.execute(sa.select(t.aliases.c.name).where(
                t.aliases.c.version_id == version_id).order_by(t.aliases.c.name)).scalars().all()
            if aliases:
                raise Conflict(f"version {version.number} of {name!r} is pointed at by alias(es) "
                               f"{', '.join(aliases)}; move or remove them first")
            conn.execute(t.versions.delete().where(t.versions.c.id == version_id))
            details: dict[str, Any] = {"version": version.number}
            if reason:
                details["reason"] = reason
            self._record(conn, model_id, "version.deleted", details, actor)
        return version

    def set_archived(self, name: str, ref: str | int, archived: bool, actor: str | None = None,
                     reason: str | None = None) -> VersionRecord:
        """Archive a version (it is no longer served) or bring it back. Archiving is refused
        (Conflict) while an alias points at it or it is pinned."""
        version = self.get_version(name, ref)
        if version.archived == archived:
            return version
        routed = version.number in _policy_versions(self.get_policy(name))
        if archived and (version.aliases or version.pinned or routed):
            held = ", ".join([*version.aliases, *(["pinned"] if version.pinned else []),
                              *(["the traffic policy"] if routed else [])])
            raise Conflict(f"version {version.number} of {name!r} is in use ({held}); it "
                           f"cannot be archived")
        with self._write() as conn:
            model_id = self._model_row(conn, name).id
            conn.execute(t.versions.update().where(t.versions.c.model_id == model_id,
                                                   t.versions.c.number == version.number)
                         .values(archived=archived, archived_at=self.now() if archived else None))
            details: dict[str, Any] = {"version": version.number}
            if reason:
                details["reason"] = reason
            self._record(conn, model_id, "version.archived" if archived else "version.unarchived",
                         details, actor)
        return self.get_version(name, version.number)

    def set_pinned(self, name: str, ref: str | int, pinned: bool,
                   actor: str | None = None) -> VersionRecord:
        """Mark a version to stay loaded (pinned) or not; recorded as an event when it changes."""
        version = self.get_version(name, ref)
        if version.pinned == pinned:
            return version
        with self._write() as conn:
            model_id = self._model_row(conn, name).id
            conn.execute(t.versions.update().where(t.versions.c.model_id == model_id,
                                                   t.versions.c.number == version.number)
                         .values(pinned=pinned))
            self._record(conn, model_id, "version.pinned" if pinned else "version.unpinned",
                         {"version": version.number}, actor)
        return dataclasses.replace(version, pinned=pinned)

    def set_settings(self, name: str, settings: dict[str, Any], actor: str | None = None) -> None:
        """Replace the model's monitoring settings; audited with before/after."""
        with self._write() as conn:
            model_id = self._model_row(conn, name).id
            where = t.model_settings.c.model_id == model_id
            before = conn.execute(sa.select(t.model_settings.c.settings).where(where)).scalar()
            conn.execute(t.model_settings.delete().where(where))
            conn.execute(t.model_settings.insert().values(model_id=model_id, settings=settings,
                                                          updated_at=self.now()))
            self._record(conn, model_id, "settings.set",
                         {"from": _secrets_hidden(before), "to": _secrets_hidden(settings)}, actor)

    def set_policy(self, name: str, policy: dict[str, Any] | None,
                   actor: str | None = None, reason: str | None = None) -> None:
        """Replace (or with None, remove) the model's traffic policy; audited with before/after
        (and ``reason``, for a change the server made itself)."""
        with self._write() as conn:
            model_id = self._model_row(conn, name).id
            where = t.traffic_policies.c.model_id == model_id
            before = conn.execute(sa.select(t.traffic_policies.c.policy).where(where)).scalar()
            conn.execute(t.traffic_policies.delete().where(where))
            if policy is not None:
                conn.execute(t.traffic_policies.insert().values(model_id=model_id, policy=policy,
                                                                updated_at=self.now()))
            kind = "traffic.set" if policy is not None else "traffic.cleared"
            details = {"from": before, "to": policy, **({"reason": reason} if reason else {})}
            self._record(conn, model_id, kind, details, actor)

    def set_alias(self, name: str, alias: str, ref: str | int,
                  actor: str | None = None) -> VersionRecord:
        check_alias_name(alias)
        version = self.get_version(name, ref)
        if version.archived:
            raise Conflict(f"version {version.number} of {name!r} is archived")
        with self._write() as conn:
            model_id = self._model_row(conn, name).id
            version_id = conn.execute(sa.select(t.versions.c.id).where(
                t.versions.c.model_id == model_id,
                t.versions.c.number == version.number)).scalar_one()
            previous = conn.execute(sa.select(t.aliases.c.version_id).where(
                t.aliases.c.model_id == model_id, t.aliases.c.name == alias)).scalar()
            conn.execute(t.aliases.delete().where(t.aliases.c.model_id == model_id,
                                                  t.aliases.c.name == alias))
            conn.execute(t.aliases.insert().values(model_id=model_id, name=alias,
                                                   version_id=version_id, updated_at=self.now()))
            self._record(conn, model_id, "alias.set",
                         {"alias": alias, "version": version.number,
                          "previous": self._number_of(conn, previous)}, actor)
        return self.get_version(name, version.number)

    def delete_alias(self, name: str, alias: str, actor: str | None = None) -> None:
        with self._write() as conn:
            model_id = self._model_row(conn, name).id
            deleted = conn.execute(t.aliases.delete().where(t.aliases.c.model_id == model_id,
                                                            t.aliases.c.name == alias))
            if deleted.rowcount == 0:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            self._record(conn, model_id, "alias.deleted", {"alias": alias}, actor)

    def record_event(self, name: str, kind: str, details: dict[str, Any],
                     actor: str | None = None) -> None:
        """Audit a change made outside the registry (an unload, say)."""
        with self._write() as conn:
            self._record(conn, self._model_row(conn, name).id, kind, details, actor)

    def append_events(self, conn: Connection, events: Iterable[EventRecord]) -> None:
        """Write audit events recorded earlier, with their own times, in a transaction of
        ``write_once``; those of models deleted since are dropped."""
        ids = dict(conn.execute(sa.select(t.models.c.name, t.models.c.id)).all())
        for e in events:
            if e.model in ids:
                self._record(conn, ids[e.model], e.kind, e.details, e.actor, e.created_at)

    def write_once(self, batch: str, write: Callable[[Connection], None]) -> bool:
        """Run ``write`` in one write transaction unless a batch with this id was written
        before; False when it was. A batch sent again after a commit whose answer was lost
        is thus written once."""
        w = t.written_batches
        with self.writing() as conn:
            if conn.execute(sa.select(w.c.id).where(w.c.id == batch)).first() is not None:
                return False
            write(conn)
            now = self.now()
            conn.execute(w.insert().values(id=batch, written_at=now))
            conn.execute(w.delete().where(w.c.written_at < now - WRITTEN_BATCH_RETENTION))
        return True

    # ---- helpers -----------------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """One write transaction (serialised with other writers on SQLite), for telemetry's
        tables: it leaves ``generation`` alone."""
        with self._transaction() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with self._transaction() as conn:
                yield conn
        finally:
            self.generation += 1
            self.on_change()

    def changed_elsewhere(self) -> None:
        """Another process changed the registry: caches of it are stale."""
        self.generation += 1

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(immediate=True) as conn, conn.begin():
            yield conn
        self.status.on_commit()

    def _ensure_model(self, conn: Connection, name: str, now: datetime) -> int:
        query = sa.select(t.models.c.id).where(t.models.c.name == name)
        found = conn.execute(query).scalar()
        if found is None:
            try:
                with conn.begin_nested():  # a concurrent first upload may insert it first
                    conn.execute(t.models.insert().values(name=name, last_version=0, created_at=now))
            except sa.exc.IntegrityError:
                pass
            found = conn.execute(query).scalar_one()
        return int(found)

    def _model_row(self, conn: Connection, name: str) -> Any:
        row = conn.execute(sa.select(t.models).where(t.models.c.name == name)).first()
        if row is None:
            raise NotFound(f"model {name[:80]!r} is not registered")
        return row

    def _model(self, conn: Connection, row: Any) -> ModelRecord:
        alias_rows = conn.execute(
            sa.select(t.aliases.c.name, t.versions.c.number)
            .join(t.versions, t.versions.c.id == t.aliases.c.version_id)
            .where(t.aliases.c.model_id == row.id).order_by(t.aliases.c.name)).all()
        aliases = {a.name: a.number for a in alias_rows}
        version_rows = conn.execute(sa.select(t.versions).where(t.versions.c.model_id == row.id)
                                    .order_by(t.versions.c.number)).all()
        versions = tuple(_version(row.name, v, aliases) for v in version_rows)
        return ModelRecord(row.name, row.created_at, versions, aliases)

    def _number_of(self, conn: Connection, version_id: int | None) -> int | None:
        if version_id is None:
            return None
        query = sa.select(t.versions.c.number).where(t.versions.c.id == version_id)
        return conn.execute(query).scalar()

    def _record(self, conn: Connection, model_id: int, kind: str, details: dict[str, Any],
                actor: str | None, at: datetime | None = None) -> None:
        conn.execute(t.events.insert().values(model_id=model_id, kind=kind, details=details,
                                              actor=actor or acting_as.get(),
                                              created_at=at or self.now()))


def _policy_versions(policy: dict[str, Any] | None) -> set[int]:
    """The versions a stored traffic policy routes or shadows to."""
    if policy is None:
        return set()
    return {int(entry["version"]) for part in ("routes", "shadows") for entry in policy.get(part, [])}


def _version(model: str, row: Any, aliases: dict[str, int]) -> VersionRecord:
    return VersionRecord(
        model=model, number=row.number, sha256=row.sha256, size=row.size, format=row.format,
        signature=Signature.from_json(row.signature), metadata=row.metadata,
        created_at=row.created_at, archived=row.archived, pinned=row.pinned,
        archived_at=row.archived_at, compiled_sha256=row.compiled_sha256,
        aliases=tuple(sorted(a for a, n in aliases.items() if n == row.number)))


def _secrets_hidden(settings: dict[str, Any] | None) -> dict[str, Any] | None:
    """Settings as the audit trail keeps them: a notify target's secret only as ``true``."""
    if not settings or not settings.get("notify"):
        return settings
    return {**settings, "notify": [{**target, "secret": bool(target.get("secret"))}
                                   for target in settings["notify"]]}
