"""Migrations on an existing warehouse: changed views are recreated, changed tables refused.

Each test migrates a database of its own in the session's embedded engine, from a copy of
``infra/ddl`` it then edits as a developer would.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from headwater.core.errors import MigrationError
from headwater.infra.migrations import DDL_DIR, apply_migrations, load_migrations
from headwater.infra.warehouse import ChdbWarehouse, Columns, QueryResult

pytestmark = pytest.mark.integration


class OwnDatabase:
    """The session's engine, with another database as the one migrations go to."""

    def __init__(self, engine: ChdbWarehouse, database: str) -> None:
        self.engine, self.database = engine, database
        engine.command(f"CREATE DATABASE IF NOT EXISTS {database}")

    def command(self, sql: str) -> None:
        self.engine.command(sql)

    def query(self, sql: str) -> QueryResult:
        return self.engine.query(sql)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        return self.engine.insert_into(self.database, table, columns, rows)

    def insert_columns(self, table: str, columns: Columns) -> int:
        return self.engine.insert_columns_into(self.database, table, columns)

    def close(self) -> None:
        self.engine.command(f"DROP DATABASE IF EXISTS {self.database}")


@pytest.fixture
def home(warehouse: ChdbWarehouse) -> Iterator[OwnDatabase]:
    database = OwnDatabase(warehouse, f"mig_{uuid.uuid4().hex[:10]}")
    yield database
    database.close()


@pytest.fixture
def ddl(tmp_path: Path) -> Path:
    copy = tmp_path / "ddl"
    shutil.copytree(DDL_DIR, copy)
    return copy


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _columns(home: OwnDatabase, table: str) -> list[str]:
    sql = (
        f"SELECT name FROM system.columns WHERE database = '{home.database}' "
        f"AND table = '{table}' ORDER BY position"
    )
    return [r[0] for r in home.query(sql).rows]


def test_a_changed_view_is_recreated_once(home: OwnDatabase, ddl: Path) -> None:
    versions = [m.version for m in load_migrations(ddl)]
    assert apply_migrations(home, ddl) == versions
    assert apply_migrations(home, ddl) == []

    _edit(ddl / "002_views.sql", "-- Rejected records", "-- Rejected records, by reason")
    assert apply_migrations(home, ddl) == []  # comments are not the migration
    _edit(
        ddl / "002_views.sql",
        "count() AS records, any(reason) AS example,",
        "count() AS records, any(reason) AS example, uniq(source_partition) AS partitions,",
    )
    assert apply_migrations(home, ddl) == [2]
    assert "partitions" in _columns(home, "v_deadletter_reasons")
    home.query(f"SELECT * FROM {home.database}.v_loop_timeline LIMIT 1")  # dependants still read
    assert apply_migrations(home, ddl) == []


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        ("001_topic_tables.sql", "key String, value String,", "key String, value String, x Int8,"),
        ("002_views.sql", "committed_offset Int64, lag Int64", "committed_offset Int64"),
        ("003_topic_in_keys.sql", "(_partition, _offset, _topic)", "(_partition, _topic)"),
    ],
)
def test_a_changed_table_migration_is_refused_naming_its_file(
    home: OwnDatabase, ddl: Path, file: str, old: str, new: str
) -> None:
    apply_migrations(home, ddl)
    _edit(ddl / file, old, new)
    with pytest.raises(MigrationError, match=rf"infra/ddl/{file} changed .* new migration file"):
        apply_migrations(home, ddl)
    assert "lag" in _columns(home, "consumer_lag")  # nothing of the edit was applied


def test_a_warehouse_migrated_before_checksums_gets_its_views_recreated(
    home: OwnDatabase, ddl: Path
) -> None:
    db = home.database
    home.command(  # the ledger as it was before checksums
        f"CREATE TABLE {db}.schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(3) DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    assert apply_migrations(home, ddl) == [m.version for m in load_migrations(ddl)]
    home.command(f"INSERT INTO {db}.schema_migrations (version, name) VALUES (1, 't'), (2, 'v')")
    assert apply_migrations(home, ddl) == [2]  # views recreated; tables trusted, recorded
    recorded = home.query(f"SELECT version, checksum FROM {db}.schema_migrations FINAL").rows
    assert {v: c for v, c in recorded} == {m.version: m.checksum for m in load_migrations(ddl)}
