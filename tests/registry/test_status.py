"""How the registry reports a database it cannot reach or write: one domain error, one state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from model_manager.errors import Unreachable
from model_manager.registry import Registry
from model_manager.registry import schema as t
from model_manager.runtimes.signature import Signature, TensorSpec

SIGNATURE = Signature((TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("y", "FP32", (-1, 4)),))


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry.from_url(f"sqlite:///{tmp_path}/db/registry.db")
    registry.migrate()
    registry.create_version("iris", sha256="0" * 64, size=1, format="onnx", signature=SIGNATURE,
                            metadata={})
    yield registry
    registry.close()


def read_only(registry: Registry, on: bool) -> None:
    """Make every new connection refuse writes, as SQLite on a read-only filesystem does."""
    registry.engine.dispose()

    def query_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")

    sa.event.listen(registry.engine, "connect", query_only)


def test_a_database_that_cannot_be_written_is_unwritable_until_a_write_commits(
        registry: Registry) -> None:
    read_only(registry, True)

    with pytest.raises(Unreachable, match="the registry cannot be written: attempt to write a "
                                          "readonly database"):
        registry.set_alias("iris", "production", 1)
    assert registry.status.state == "unwritable" and registry.status.since is not None
    assert registry.get_model("iris").name == "iris"  # reads still work...
    assert registry.status.state == "unwritable"  # ...and do not say it is writable again

    read_only(registry, False)
    registry.set_alias("iris", "production", 1)
    assert registry.status.to_json()["state"] == "ok" and registry.status.since is None


def test_a_missing_database_is_unreachable_until_a_statement_runs(
        registry: Registry, tmp_path: Path) -> None:
    registry.engine.dispose()
    (tmp_path / "db").rename(tmp_path / "gone")

    with pytest.raises(Unreachable, match="the registry is unreachable: unable to open"):
        registry.list_models()
    assert registry.status.state == "unreachable" and registry.status.down_seconds() >= 0

    (tmp_path / "gone").rename(tmp_path / "db")
    assert [m.name for m in registry.list_models()] == ["iris"]
    assert registry.status.state == "ok"


def test_a_batch_is_written_once_however_often_it_is_sent(registry: Registry) -> None:
    def write(conn: sa.Connection) -> None:
        conn.execute(t.events.insert().values(model_id=1, kind="test", details={},
                                              created_at=registry.now()))

    assert registry.write_once("batch-1", write) is True
    assert registry.write_once("batch-1", write) is False
    assert registry.write_once("batch-2", write) is True
    assert [e.kind for e in registry.list_events("iris")].count("test") == 2


def test_other_database_errors_are_left_as_they_are(registry: Registry) -> None:
    with pytest.raises(sa.exc.IntegrityError), registry.writing() as conn:
        conn.execute(t.models.insert().values(name="iris", last_version=0,
                                              created_at=registry.now()))
    assert registry.status.state == "ok"
