"""Versioned DDL migrations: ``infra/ddl/NNN_name.sql`` applied in order.

Applied versions are recorded in ``<db>.schema_migrations`` with a checksum of their statements
(comments aside); applying twice changes nothing. Views are idempotent to recreate, so an
applied migration whose only changes are in its views (``CREATE VIEW``) has those views
recreated (``CREATE OR REPLACE VIEW``); one whose tables or other statements changed is refused
(:class:`~headwater.core.errors.MigrationError`): a table changes through a new migration file. A
view
removed from a file stays in the warehouse until a migration drops it. The same SQL runs on chDB
and on a ClickHouse server (``{db}`` is the configured database).

>>> m = Migration(2, "views", ["CREATE TABLE IF NOT EXISTS {db}.t (a Int8) ENGINE = Log",
...                            "CREATE VIEW IF NOT EXISTS {db}.v AS SELECT a FROM {db}.t"])
>>> m.views
['CREATE OR REPLACE VIEW {db}.v AS SELECT a FROM {db}.t']
>>> m.schema_checksum == Migration(2, "views", m.statements[:1]).checksum
True
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from headwater.core.errors import MigrationError
from headwater.infra.warehouse import Warehouse

DDL_DIR = Path(__file__).parent / "ddl"

_VIEW = re.compile(r"^CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?", re.I)


def table_for_topic(topic: str) -> str:
    """The warehouse table of a DESIGN.md topic.

    >>> table_for_topic("events.raw"), table_for_topic("model-versions")
    ('events_raw', 'model_versions')
    """
    return topic.replace(".", "_").replace("-", "_")


def _digest(statements: list[str]) -> str:
    return hashlib.sha256(";\n".join(statements).encode()).hexdigest()


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: list[str]

    @property
    def file_name(self) -> str:
        return f"{self.version:03d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        return _digest(self.statements)

    @property
    def schema_checksum(self) -> str:
        """The checksum of every statement but the views: what may never change once applied."""
        return _digest([s for s in self.statements if not _VIEW.match(s)])

    @property
    def views(self) -> list[str]:
        """The migration's views as statements that recreate them."""
        return [_VIEW.sub("CREATE OR REPLACE VIEW ", s) for s in self.statements if _VIEW.match(s)]


def load_migrations(ddl_dir: Path = DDL_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(ddl_dir.glob("*.sql")):
        number, _, name = path.stem.partition("_")
        text = "\n".join(
            line for line in path.read_text().splitlines() if not line.strip().startswith("--")
        )
        statements = [s.strip() for s in text.split(";") if s.strip()]
        migrations.append(Migration(int(number), name, statements))
    return migrations


@dataclass(frozen=True)
class _Applied:
    checksum: str  # empty: recorded before checksums were
    schema_checksum: str


def _ledger(warehouse: Warehouse) -> dict[int, _Applied]:
    db = warehouse.database
    warehouse.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, "
        "checksum String, schema_checksum String, applied_at DateTime64(3) DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    warehouse.command(  # a warehouse migrated before checksums were recorded
        f"ALTER TABLE {db}.schema_migrations ADD COLUMN IF NOT EXISTS checksum String "
        "AFTER name, ADD COLUMN IF NOT EXISTS schema_checksum String AFTER checksum"
    )
    rows = warehouse.query(
        f"SELECT version, checksum, schema_checksum FROM {db}.schema_migrations FINAL"
    ).rows
    return {int(v): _Applied(str(c), str(s)) for v, c, s in rows}


def _statements_to_run(migration: Migration, applied: _Applied | None, db: str) -> list[str]:
    if applied is None:
        return migration.statements
    if applied.checksum == migration.checksum:
        return []
    if applied.schema_checksum and applied.schema_checksum != migration.schema_checksum:
        raise MigrationError(
            f"infra/ddl/{migration.file_name} changed after it was applied to the warehouse "
            f"database {db}, outside its views: an applied migration's tables never change; "
            "restore the file and put the change in a new migration file (NNN_name.sql)"
        )
    return migration.views  # only views changed (or no checksum was recorded): recreate them


def apply_migrations(warehouse: Warehouse, ddl_dir: Path = DDL_DIR) -> list[int]:
    """Apply every migration not applied yet and recreate the views of those whose views
    changed; returns the versions that ran statements now."""
    db = warehouse.database
    ledger = _ledger(warehouse)
    ran = []
    for migration in load_migrations(ddl_dir):
        applied = ledger.get(migration.version)
        statements = _statements_to_run(migration, applied, db)
        if applied is not None and applied.checksum == migration.checksum:
            continue
        for statement in statements:
            warehouse.command(statement.replace("{db}", db))
        warehouse.insert(
            "schema_migrations",
            ["version", "name", "checksum", "schema_checksum"],
            [[migration.version, migration.name, migration.checksum, migration.schema_checksum]],
        )
        if statements:
            ran.append(migration.version)
    return ran
