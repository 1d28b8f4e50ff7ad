"""What exists: models, versions, aliases and audit events in one SQL database."""

from __future__ import annotations

from model_manager.registry.names import NAME_PATTERN, check_alias_name, check_model_name
from model_manager.registry.records import EventRecord, ModelRecord, VersionRecord
from model_manager.registry.registry import Registry, acting_as, create_registry_engine

__all__ = [
    "NAME_PATTERN",
    "EventRecord",
    "ModelRecord",
    "Registry",
    "VersionRecord",
    "acting_as",
    "check_alias_name",
    "check_model_name",
    "create_registry_engine",
]
