"""The registry's tables. Migrations in ``migrations/`` create them; a test keeps both in step."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite returns naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


metadata = MetaData()

models = Table(
    "models", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("last_version", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
)

versions = Table(
    "versions", metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("sha256", String(64), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("format", String(32), nullable=False),
    Column("signature", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("archived", Boolean, nullable=False, default=False),
    Column("pinned", Boolean, nullable=False, default=False, server_default=sa_false()),
    Column("archived_at", UTCDateTime, nullable=True),
    Column("compiled_sha256", String(64), nullable=True, index=True),
    UniqueConstraint("model_id", "number", name="uq_versions_model_number"),
)

aliases = Table(
    "aliases", metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(63), primary_key=True),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("kind", String(64), nullable=False),
    Column("details", JSON, nullable=False),
    Column("actor", String(128), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

usage_daily = Table(
    "usage_daily", metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("counts", JSON, nullable=False),
    Column("first_used", UTCDateTime, nullable=True),
    Column("last_used", UTCDateTime, nullable=True),
)

traffic_policies = Table(
    "traffic_policies", metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("policy", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

model_settings = Table(
    "model_settings", metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("settings", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

shadow_daily = Table(
    "shadow_daily", metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("primary_version", Integer, primary_key=True),
    Column("shadow_version", Integer, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("stats", JSON, nullable=False),
)

prediction_log = Table(
    "prediction_log", metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("prediction_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("role", String(8), nullable=False),
    Column("prediction", JSON, nullable=False),
    Column("outputs", JSON, nullable=True),
    Column("outcome", JSON, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_prediction_log_lookup", "model_id", "prediction_id"),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("salt", String(32), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

written_batches = Table(
    "written_batches", metadata,
    Column("id", String(32), primary_key=True),
    Column("written_at", UTCDateTime, nullable=False, index=True),
)
"""Ids of the telemetry batches already written, so that a batch sent again after a failed
commit is written once (``Registry.write_once``)."""

replicas = Table(
    "replicas", metadata,
    Column("id", String(64), primary_key=True),
    Column("address", String(255), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False, index=True),
    Column("budget_bytes", BigInteger, nullable=False),
    Column("used_bytes", BigInteger, nullable=False),
    Column("versions", JSON, nullable=False),
)
"""The servers sharing this registry, each heartbeating its row (``fleet.Fleet``)."""

notifications = Table(
    "notifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(255), nullable=False),
    Column("version", Integer, nullable=True),
    Column("event", String(32), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", String(500), nullable=True),
    Column("replica", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("delivered_at", UTCDateTime, nullable=True),
    Index("ix_notifications_model_created", "model", "created_at"),
    Index("ix_notifications_due", "status", "next_attempt_at"),
)
"""Webhook messages to models' owners and their delivery (``notify.Notifier``)."""

drift_references = Table(
    "drift_references", metadata,
    Column("model", String(255), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("source", String(16), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("profile", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
"""Each version's reference input profile for drift (``telemetry.drift``)."""

cleanup_plans = Table(
    "cleanup_plans", metadata,
    Column("model", String(255), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("finding", String(32), nullable=False),
    Column("planned_at", UTCDateTime, nullable=False),
    Column("archive_after", UTCDateTime, nullable=False),
)
"""Versions the scheduled cleanup will archive, once their notice has passed (``governance``)."""
