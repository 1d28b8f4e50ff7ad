"""The registry on a real SQLite file: version numbering, references, aliases, events, schema."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from model_manager.errors import Conflict, InvalidName, NotFound
from model_manager.registry import Registry, VersionRecord
from model_manager.registry import schema as t
from model_manager.runtimes.signature import Signature, TensorSpec

SIGNATURE = Signature((TensorSpec("input", "FP32", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),))


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    """Every registry test runs on SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/r.db"
    else:
        url = request.getfixturevalue("postgres").new_database()
    registry = Registry.from_url(url)
    registry.migrate()
    yield registry
    registry.close()


def add(registry: Registry, name: str = "iris", sha256: str = "a" * 64,
        actor: str | None = None) -> VersionRecord:
    return registry.create_version(name, sha256=sha256, size=10, format="onnx", signature=SIGNATURE,
                                   metadata={"owner": "team"}, actor=actor)


def test_first_version_is_one_and_keeps_what_was_registered(registry: Registry) -> None:
    version = add(registry, sha256="b" * 64)

    assert version.number == 1
    assert (version.model, version.sha256, version.size, version.format) == ("iris", "b" * 64, 10, "onnx")
    assert version.signature == SIGNATURE
    assert version.metadata == {"owner": "team"}
    assert version.archived is False
    assert version.aliases == ()
    assert version.created_at.tzinfo is not None


def test_version_numbers_increase_per_model(registry: Registry) -> None:
    assert [add(registry, "iris").number for _ in range(3)] == [1, 2, 3]
    assert add(registry, "other").number == 1
    assert add(registry, "iris").number == 4
    assert [v.number for v in registry.get_model("iris").versions] == [1, 2, 3, 4]


def test_deleted_version_numbers_are_never_reused(registry: Registry) -> None:
    add(registry)
    add(registry)
    registry.delete_version("iris", 2)

    assert add(registry).number == 3
    registry.delete_version("iris", 1)
    registry.delete_version("iris", 3)
    assert registry.get_model("iris").versions == ()
    assert add(registry).number == 4


def test_get_version_by_number_string_and_alias(registry: Registry) -> None:
    add(registry, sha256="1" * 64)
    add(registry, sha256="2" * 64)
    registry.set_alias("iris", "staging", 1)

    assert registry.get_version("iris", 2).sha256 == "2" * 64
    assert registry.get_version("iris", "2").sha256 == "2" * 64
    assert registry.get_version("iris", "staging").number == 1
    assert registry.get_version("iris", "staging").aliases == ("staging",)


def test_get_version_unknown_references_raise_not_found(registry: Registry) -> None:
    add(registry)

    with pytest.raises(NotFound):
        registry.get_version("iris", 7)
    with pytest.raises(NotFound):
        registry.get_version("iris", "nope")
    with pytest.raises(NotFound):
        registry.get_version("missing", 1)
    for digits in ("\u00b2", "\u0661"):  # str.isdigit() is true for these; they are not version numbers
        with pytest.raises(NotFound):
            registry.get_version("iris", digits)


def test_default_version_is_production_alias_else_newest(registry: Registry) -> None:
    add(registry)
    add(registry)
    add(registry)
    assert registry.get_version("iris", None).number == 3
    assert registry.get_version("iris", "").number == 3

    registry.set_alias("iris", "production", 1)
    assert registry.get_version("iris", None).number == 1

    registry.delete_alias("iris", "production")
    assert registry.get_version("iris", None).number == 3


def test_default_version_skips_archived_versions(registry: Registry) -> None:
    add(registry)
    add(registry)
    # No API archives a version yet; flip the column as a future one would.
    with registry.engine.begin() as conn:
        conn.execute(t.versions.update().where(t.versions.c.number == 2).values(archived=True))

    assert registry.get_version("iris", None).number == 1
    with registry.engine.begin() as conn:
        conn.execute(t.versions.update().values(archived=True))
    with pytest.raises(NotFound, match="no unarchived version"):
        registry.get_version("iris", None)


def test_set_alias_moves_and_delete_alias_removes(registry: Registry) -> None:
    add(registry)
    add(registry)

    assert registry.set_alias("iris", "production", 1).aliases == ("production",)
    moved = registry.set_alias("iris", "production", "2")
    assert moved.number == 2
    assert moved.aliases == ("production",)
    assert registry.get_model("iris").aliases == {"production": 2}
    assert registry.get_version("iris", 1).aliases == ()

    registry.delete_alias("iris", "production")
    assert registry.get_model("iris").aliases == {}
    with pytest.raises(NotFound):
        registry.get_version("iris", "production")


def test_delete_unknown_alias_raises_not_found(registry: Registry) -> None:
    add(registry)
    with pytest.raises(NotFound, match="no alias"):
        registry.delete_alias("iris", "ghost")


def test_set_alias_to_missing_version_raises_not_found(registry: Registry) -> None:
    add(registry)
    with pytest.raises(NotFound):
        registry.set_alias("iris", "production", 5)
    assert registry.get_model("iris").aliases == {}


@pytest.mark.parametrize("name", ["../x", "Upper", "a" * 200, "", "-leading", "with space"])
def test_invalid_model_names_are_refused(registry: Registry, name: str) -> None:
    with pytest.raises(InvalidName):
        add(registry, name)
    assert registry.is_empty()


@pytest.mark.parametrize("alias", ["../x", "Upper", "a" * 200, "123", "0"])
def test_invalid_alias_names_are_refused(registry: Registry, alias: str) -> None:
    add(registry)
    with pytest.raises(InvalidName):
        registry.set_alias("iris", alias, 1)
    assert registry.get_model("iris").aliases == {}


def test_valid_names_with_dots_dashes_and_digits_are_accepted(registry: Registry) -> None:
    add(registry, "resnet-50.v2_final")
    registry.set_alias("resnet-50.v2_final", "v2", 1)
    assert registry.get_version("resnet-50.v2_final", "v2").number == 1


def test_delete_aliased_version_is_a_conflict_and_keeps_the_row(registry: Registry) -> None:
    add(registry)
    registry.set_alias("iris", "production", 1)

    with pytest.raises(Conflict, match="production"):
        registry.delete_version("iris", 1)

    assert registry.get_version("iris", 1).aliases == ("production",)
    assert [e.kind for e in registry.list_events("iris")].count("version.deleted") == 0
    registry.delete_alias("iris", "production")
    assert registry.delete_version("iris", 1).number == 1
    with pytest.raises(NotFound):
        registry.get_version("iris", 1)


def test_events_are_recorded_newest_first(registry: Registry) -> None:
    add(registry, actor="alice")
    add(registry)
    registry.set_alias("iris", "production", 1, actor="bob")
    registry.set_alias("iris", "production", 2)
    registry.delete_version("iris", 1, actor="carol")

    events = registry.list_events("iris")
    assert [e.kind for e in events] == ["version.deleted", "alias.set", "alias.set",
                                        "version.created", "version.created"]
    assert events[0].details == {"version": 1}
    assert events[0].actor == "carol"
    assert events[1].details == {"alias": "production", "version": 2, "previous": 1}
    assert events[2].details == {"alias": "production", "version": 1, "previous": None}
    assert events[2].actor == "bob"
    assert events[4].details == {"version": 1, "sha256": "a" * 64, "format": "onnx"}
    assert events[4].actor == "alice"
    assert all(e.model == "iris" for e in events)
    assert [e.kind for e in registry.list_events("iris", limit=2)] == ["version.deleted", "alias.set"]


def test_blob_reference_follows_versions(registry: Registry) -> None:
    add(registry, sha256="c" * 64)
    add(registry, sha256="c" * 64)
    assert registry.is_blob_referenced("c" * 64)
    assert not registry.is_blob_referenced("d" * 64)

    registry.delete_version("iris", 1)
    assert registry.is_blob_referenced("c" * 64)
    registry.delete_version("iris", 2)
    assert not registry.is_blob_referenced("c" * 64)


def test_migrate_twice_is_harmless(registry: Registry) -> None:
    add(registry)
    registry.migrate()

    assert registry.get_version("iris", 1).number == 1
    assert add(registry).number == 2


def test_data_survives_reopening_the_file(tmp_path: Path) -> None:
    first = Registry.from_url(f"sqlite:///{tmp_path}/r.db")
    first.migrate()
    add(first)
    first.close()

    second = Registry.from_url(f"sqlite:///{tmp_path}/r.db")
    second.migrate()
    try:
        assert [m.name for m in second.list_models()] == ["iris"]
        assert add(second).number == 2
    finally:
        second.close()


def test_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    registry = Registry.from_url(f"sqlite:///{tmp_path}/r.db")
    registry.migrate()
    try:
        with registry.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        registry.close()
    assert (tmp_path / "r.db").is_file()


def test_concurrent_creates_get_distinct_numbers(registry: Registry) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(lambda i: add(registry, sha256=f"{i:064x}"), range(8)))

    assert sorted(v.number for v in versions) == list(range(1, 9))
    stored = registry.get_model("iris").versions
    assert [v.number for v in stored] == list(range(1, 9))
    assert {v.sha256 for v in stored} == {f"{i:064x}" for i in range(8)}
    assert len(registry.list_models()) == 1


def test_migrations_produce_exactly_the_declared_schema(registry: Registry) -> None:
    with registry.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert diff == []


def test_migrated_schema_differs_from_an_empty_database(tmp_path: Path) -> None:
    # Guards the test above: compare_metadata does report missing tables on this backend.
    engine = sa.create_engine(f"sqlite:///{tmp_path}/empty.db")
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    finally:
        engine.dispose()
    assert {d[1].name for d in diff if d[0] == "add_table"} == {"models", "versions", "aliases", "events",
                                                                 "usage_daily", "traffic_policies",
                                                                 "model_settings", "shadow_daily",
                                                                 "prediction_log", "api_keys",
                                                                 "written_batches", "replicas",
                                                                 "notifications",
                                                                 "drift_references",
                                                                 "cleanup_plans"}
