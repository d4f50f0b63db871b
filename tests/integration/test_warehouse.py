"""The embedded ClickHouse engine (chDB): migrations, inserts, idempotent re-inserts."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from headwater.core.errors import WarehouseError
from headwater.infra.migrations import apply_migrations, load_migrations, table_for_topic
from headwater.infra.warehouse import ChdbWarehouse, ServerWarehouse, Warehouse
from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.topics import TOPICS

pytestmark = pytest.mark.integration

# The same contract runs on the embedded engine always, and on a ClickHouse server when one is
# given (the SQL must be the same on both).
SERVER_URL = os.environ.get("HEADWATER_TEST_CLICKHOUSE_URL", "")
BACKENDS = ["chdb", "server"] if SERVER_URL else ["chdb"]


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, warehouse: ChdbWarehouse) -> Iterator[Warehouse]:
    if request.param == "chdb":
        yield warehouse
        return
    server = ServerWarehouse(SERVER_URL, "headwater")
    apply_migrations(server)
    yield server
    server.close()


def test_migrations_are_applied_once(engine: Warehouse) -> None:
    assert apply_migrations(engine) == []
    applied = engine.query("SELECT version FROM headwater.schema_migrations FINAL ORDER BY 1")
    assert [r[0] for r in applied.rows] == [m.version for m in load_migrations()]


@pytest.mark.parametrize("topic", list(TOPICS))
def test_every_topic_has_a_table_with_its_fields(engine: Warehouse, topic: str) -> None:
    columns = {
        r[0]
        for r in engine.query(
            f"SELECT name FROM system.columns WHERE database = 'headwater' "
            f"AND table = '{table_for_topic(topic)}'"
        ).rows
    }
    assert {"_partition", "_offset", "_ingested_at"} <= columns
    schema = TOPICS[topic].schema
    if schema:
        assert set(SchemaCatalog.default().get(schema).field_names) <= columns


def test_reinserting_the_same_records_leaves_counts_unchanged(engine: Warehouse) -> None:
    columns = [
        "request_id",
        "entity_id",
        "model",
        "version",
        "route",
        "output",
        "features",
        "event_time_ms",
        "served_at_ms",
        "latency_ms",
        "fallback",
        "_partition",
        "_offset",
    ]
    rows = [
        [
            f"req-{i}",
            "c1",
            "dedup-model",
            1,
            "champion",
            0.5,
            {"a": float(i)},
            i,
            i,
            0.1,
            False,
            0,
            i,
        ]
        for i in range(500)
    ]
    engine.insert("predictions", columns, rows)
    engine.insert("predictions", columns, rows[:250])  # a redelivered batch
    count = engine.query(
        "SELECT count() FROM headwater.predictions FINAL WHERE model = 'dedup-model'"
    ).scalar()
    assert count == 500


def test_values_survive_the_round_trip(engine: Warehouse) -> None:
    row = ["events.raw", 1, 7, "BAD_JSON", "it's \\ broken\n", None, b"\x00\xff'x", 5, 0, 7]
    columns = [
        "source_topic",
        "source_partition",
        "source_offset",
        "reason_code",
        "reason",
        "original_key",
        "original_value",
        "failed_at_ms",
        "_partition",
        "_offset",
    ]
    engine.insert("deadletter", columns, [row])
    found = engine.query(
        "SELECT reason, original_key, hex(original_value) FROM headwater.deadletter FINAL "
        "WHERE source_offset = 7"
    ).rows
    assert found == [["it's \\ broken\n", None, "00FF2778"]]


def test_bad_sql_names_the_engine(engine: Warehouse) -> None:
    with pytest.raises(WarehouseError, match=r"chDB|server"):
        engine.query("SELECT * FROM headwater.no_such_table")


@pytest.mark.parametrize("clause", ["FORMAT Vertical", "FORMAT JSONEachRow", "FORMAT CSV"])
def test_a_format_clause_of_the_sqls_own_is_named(warehouse: ChdbWarehouse, clause: str) -> None:
    """The engine writes what the SQL's FORMAT says, not the JSONCompact the query asks for."""
    with pytest.raises(WarehouseError, match="FORMAT clause"):
        warehouse.query(f"SELECT 1 AS n, 'x' AS s UNION ALL SELECT 2, 'y' {clause}")
    assert warehouse.query("SELECT 1 AS n").rows == [[1]]
