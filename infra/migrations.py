"""Versioned DDL migrations: ``infra/ddl/NNN_name.sql`` applied once each, in order.

Applied versions are recorded in ``<db>.schema_migrations``; applying twice changes nothing.
The same SQL runs on chDB and on a ClickHouse server (``{db}`` is the configured database).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.warehouse import Warehouse

DDL_DIR = Path(__file__).parent / "ddl"


def table_for_topic(topic: str) -> str:
    """The warehouse table of a DESIGN.md topic.

    >>> table_for_topic("events.raw"), table_for_topic("model-versions")
    ('events_raw', 'model_versions')
    """
    return topic.replace(".", "_").replace("-", "_")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: list[str]


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


def apply_migrations(warehouse: Warehouse) -> list[int]:
    """Apply every migration not applied yet; returns the versions applied now."""
    db = warehouse.database
    warehouse.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(3) DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {int(r[0]) for r in warehouse.query(f"SELECT version FROM {db}.schema_migrations").rows}
    applied = []
    for migration in load_migrations():
        if migration.version in done:
            continue
        for statement in migration.statements:
            warehouse.command(statement.replace("{db}", db))
        warehouse.insert(
            "schema_migrations", ["version", "name"], [[migration.version, migration.name]]
        )
        applied.append(migration.version)
    return applied
