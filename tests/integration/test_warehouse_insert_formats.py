"""Bulk inserts as Arrow columns, as JSON columns (directly and through the warehouse host), and
as the sink's columns decoded straight into Arrow (directly and through the host, as an Arrow
stream) store exactly what ``VALUES`` literals store, on every topic table."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Message

from bench.bench_sink import hosted
from headwater.infra.sql_literals import values_clause
from headwater.infra.warehouse import ChdbWarehouse, arrow_table, columns_of, json_columns
from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.codec import AvroCodec
from headwater.schemas.topics import TOPICS
from headwater.streams.sink import Batcher, table_maps
from tests.unit.test_schemas import SAMPLES

pytestmark = pytest.mark.integration


def _awkward(record: dict[str, Any]) -> dict[str, Any]:
    """The sample with the values JSON writers get wrong: NaN, ±inf, quotes, non-ASCII."""
    out = dict(record)
    for name, value in record.items():
        if isinstance(value, dict) and value and isinstance(next(iter(value.values())), float):
            out[name] = {**value, "nan": float("nan"), "up": float("inf"), "down": -float("inf")}
        elif isinstance(value, float):
            out[name] = float("nan")
        elif isinstance(value, str) and value:
            out[name] = value + ' it\'s "é" \\ null\n'
    return out


def _refuse(message: Message, error: Exception) -> None:
    raise AssertionError(f"the sink rejected a sample: {error}")


def _stored(warehouse: ChdbWarehouse, table: str) -> bytes:
    result = warehouse._run(f"SELECT * EXCEPT (_ingested_at) FROM cmp.{table}", "TabSeparated")
    data: bytes = result.bytes()
    return data


@pytest.mark.parametrize("topic", [t for t in TOPICS if TOPICS[t].model is not None])
def test_arrow_and_json_columns_store_what_values_literals_store(
    warehouse: ChdbWarehouse, topic: str
) -> None:
    mapping = table_maps(warehouse)[topic]
    model = TOPICS[topic].model
    assert model is not None
    sample = model.model_validate(SAMPLES[model.__name__]).to_avro()
    codec = AvroCodec(SchemaCatalog.default())
    encoded = [codec.encode(model.SCHEMA, r) for r in (sample, _awkward(sample))]
    # as read back (a number of a union of types comes back as the branch it was written in)
    rows = [mapping.row(codec.decode(e)[1], topic, 1, 7) for e in encoded]
    names = ",".join(f"`{c}`" for c in mapping.insert_columns)
    warehouse.command("CREATE DATABASE IF NOT EXISTS cmp")
    stored = []
    columns = columns_of(mapping.insert_columns, rows)
    payload = json_columns(columns)
    types = warehouse.query(
        "SELECT name, type FROM system.columns "
        f"WHERE database = 'headwater' AND table = '{mapping.table}'"
    ).rows
    arrow_table(columns, dict(types))  # every topic's values fit their Arrow types: no fallback
    messages = [Message(topic=topic, partition=1, offset=7, value=v) for v in encoded]
    batch, _ = Batcher({topic: mapping}, {topic: topic}, codec, _refuse).batch(messages)
    decoded = batch[mapping.table]
    for fmt in ("values", "arrow", "json", "host", "decoded", "host_decoded"):
        table = f"{mapping.table}_{fmt}"
        warehouse.command(f"DROP TABLE IF EXISTS cmp.{table}")
        warehouse.command(f"CREATE TABLE cmp.{table} AS headwater.{mapping.table} ENGINE = Memory")
        if fmt == "values":
            warehouse.command(f"INSERT INTO cmp.{table} ({names}) VALUES {values_clause(rows)}")
        elif fmt == "arrow":  # what insert does
            assert warehouse.insert_columns_into("cmp", table, columns) == len(rows)
        elif fmt == "decoded":  # what the sink inserts
            assert warehouse.insert_columns_into("cmp", table, decoded) == len(rows)
        elif fmt == "host_decoded":
            with hosted(warehouse, "cmp") as client:
                assert client.insert_columns(table, decoded) == len(rows)
        elif fmt == "json":  # what the warehouse host receives
            if payload is None:
                continue
            warehouse.insert_json_columns("cmp", table, mapping.insert_columns, payload)
        else:  # through the warehouse host, as the sink under `headwater up`
            with hosted(warehouse, "cmp") as client:
                assert client.insert(table, mapping.insert_columns, rows) == len(rows)
        stored.append(_stored(warehouse, table))
    assert stored == [stored[0]] * len(stored)
    assert stored[0].count(b"\n") == 2
    if any(isinstance(v, bytes) for row in rows for v in row):
        assert payload is None  # bytes go as VALUES literals
