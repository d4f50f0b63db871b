"""Records decoded straight into Arrow columns (the native ``decode_columns``) give exactly the
columns of decoding them one by one and pivoting: on spec-conforming records written by
fastavro, with nulls in unions either way round, maps, arrays and empty ones, and on the
platform's topics through the sink's :class:`Batcher`."""

from __future__ import annotations

import io
import math
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from confluent_kafka import Message
from fastavro import parse_schema, schemaless_writer

from headwater.infra.warehouse import arrow_table, plain_columns
from headwater.schemas.avro_plan import native_type, plan_of
from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.codec import AvroCodec
from headwater.schemas.topics import TOPICS
from headwater.streams.columnar import decode_columns
from headwater.streams.sink import Batcher, RecordDecoder, TableMap
from tests.unit.test_schemas import SAMPLES

CODEC = AvroCodec(SchemaCatalog.default())
# Readers are typed Any below: an installed stub may predate decode_columns.

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Everything",
    "fields": [
        {"name": "s", "type": "string"},
        {"name": "b", "type": "bytes"},
        {"name": "i", "type": "int"},
        {"name": "n", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "flag", "type": "boolean"},
        {"name": "maybe_s", "type": ["null", "string"]},
        {"name": "maybe_n", "type": ["long", "null"]},
        {"name": "scores", "type": {"type": "map", "values": "double"}},
        {"name": "tags", "type": {"type": "map", "values": "string"}},
        {"name": "gaps", "type": {"type": "map", "values": ["null", "double"]}},
        {"name": "ids", "type": {"type": "array", "items": "long"}},
        {"name": "names", "type": {"type": "array", "items": ["string", "null"]}},
        {"name": "maybe_map", "type": ["null", {"type": "map", "values": "long"}]},
    ],
}


def _record(i: int) -> dict[str, Any]:
    return {
        "s": f"s{i} é \"'" if i % 3 else "",
        "b": bytes([i % 256, 0, 255]),
        "i": -(2**31) if i == 4 else i,
        "n": 2**63 - 1 if i == 5 else -i * 10**12,
        "f": i / 3,
        "d": [math.nan, math.inf, -0.0][i % 3] if i % 4 == 0 else i / 7,
        "flag": i % 2 == 0,
        "maybe_s": None if i % 2 else f"m{i}",
        "maybe_n": None if i % 3 == 0 else i,
        "scores": {f"k{j}": j / 3 for j in range(i % 4)},
        "tags": {"country": "FR", "note": "ü"} if i % 2 else {},
        "gaps": {"a": None, "b": float(i)} if i % 2 else {"c": None},
        "ids": list(range(i % 5)),
        "names": ["x", None, f"y{i}"] if i % 2 else [],
        "maybe_map": None if i % 2 else {"one": i},
    }


def _encoded(records: list[dict[str, Any]]) -> list[bytes]:
    parsed = parse_schema(SCHEMA)
    out = []
    for record in records:
        buffer = io.BytesIO()
        schemaless_writer(buffer, parsed, record)
        out.append(buffer.getvalue())
    return out


def _pivoted(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [r[name] for r in records] for name in records[0]}


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN and -0.0 told from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_columns_equal_the_records_decoded_one_by_one() -> None:
    records = [_record(i) for i in range(40)]
    values = _encoded(records)
    reader: Any = native_type(SCHEMA, "Everything")
    assert reader is not None
    columns = decode_columns(reader, values, 0)
    assert columns is not None and list(columns) == [f["name"] for f in SCHEMA["fields"]]
    one_by_one = _pivoted([reader.decode(v) for v in values])
    assert _same(plain_columns(columns), one_by_one)
    written = _pivoted(records)
    written["f"] = [float(pa.scalar(x, pa.float32()).as_py()) for x in written["f"]]
    assert _same(plain_columns(columns), written)
    assert columns["s"].type == pa.string() and columns["b"].type == pa.binary()
    assert columns["maybe_s"].null_count == 20 and columns["maybe_n"].null_count == 14


def test_blocks_with_byte_sizes_read_as_the_record_reader_reads_them() -> None:
    # ids: one block of -2 items with its byte size (2 bytes), then the end; the rest empty.
    record = _encoded([{**_record(1), "ids": []}])[0]
    head = _encoded([{**_record(1), "ids": [], "names": [], "maybe_map": None}])[0]
    reader: Any = native_type(SCHEMA, "Everything")
    assert reader is not None
    cut = len(head) - 3  # ids, names and maybe_map: 0, 0, union branch 0
    blocked = head[:cut] + bytes([3, 4, 2, 4, 0]) + head[cut + 1 :]
    assert reader.decode(blocked)["ids"] == [1, 2]
    columns = decode_columns(reader, [record, blocked], 0)
    assert columns is not None and columns["ids"].to_pylist() == [[], [1, 2]]


def test_a_record_that_does_not_decode_leaves_the_batch_to_the_one_by_one_path() -> None:
    values = _encoded([_record(i) for i in range(3)])
    reader: Any = native_type(SCHEMA, "Everything")
    assert reader is not None
    with pytest.raises(ValueError, match="record 1: "):
        reader.decode_columns([values[0], values[1][:-4], values[2]], 0)
    with pytest.raises(ValueError, match="record 0: 1 byte"):
        reader.decode_columns([values[0] + b"\x00"], 0)
    assert decode_columns(reader, [values[0], values[1][:-4]], 0) is None
    assert decode_columns(reader, [], 0) is None


def test_a_schema_the_columns_do_not_cover_is_left_to_the_record_reader() -> None:
    enum = {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}}
    schema = {**SCHEMA, "name": "WithEnum", "fields": [*SCHEMA["fields"], enum]}
    reader: Any = native_type(schema, "WithEnum")
    assert reader is not None and reader.decode_columns([], 0) is None


_CLICKHOUSE = {
    "string": "String",
    "bytes": "String",
    "boolean": "Bool",
    "int": "Int32",
    "long": "Int64",
    "double": "Float64",
}


def _type(plan: Any) -> str:
    """The ClickHouse type a table gives a field of this plan (``avro_plan.plan_of``)."""
    if isinstance(plan, str):
        return _CLICKHOUSE[plan]
    if plan[0] == "map":
        return f"Map(String, {_type(plan[1])})"
    if plan[0] == "array":
        return f"Array({_type(plan[1])})"
    (branch,) = [b for b in plan[1] if b != "null"]
    return f"Nullable({_type(branch)})"


def _types(schema: Any) -> dict[str, str]:
    types = {"_topic": "String", "_partition": "Int32", "_offset": "Int64"}
    fields: Any = plan_of(schema)[1]
    return types | {name: _type(plan) for name, plan, *_ in fields}


@pytest.mark.parametrize("topic", [t for t, s in TOPICS.items() if s.model is not None])
def test_the_batcher_s_columns_equal_the_pivoted_records(topic: str) -> None:
    model = TOPICS[topic].model
    assert model is not None
    sample = model.model_validate(SAMPLES[model.__name__]).to_avro()
    schema = CODEC.catalog.get(model.SCHEMA)
    reader: Any = CODEC.native_of(schema)
    # Schemas the columns do not cover (runs, trials) take the record-by-record path: plain
    # lists, the same values.
    covered = reader is not None and reader.decode_columns([], 0) is not None
    values = [CODEC.encode(model.SCHEMA, sample) for _ in range(3)]
    mapping = TableMap(topic, topic, tuple(sample), frozenset(), with_topic=True)
    messages = [
        Message(topic=topic, partition=1, offset=7 + i, value=v) for i, v in enumerate(values)
    ]
    rejected: list[Message] = []
    batch, _ = Batcher(
        {topic: mapping}, {topic: topic}, CODEC, lambda m, e: rejected.append(m)
    ).batch(messages)
    columns = batch[topic]
    assert not rejected
    assert all(isinstance(columns[c], pa.Array) == covered for c in mapping.columns)
    records, failures = RecordDecoder(CODEC).decode_all(values)
    assert not failures
    pivoted = mapping.columns_of(records, topic, [1, 1, 1], [7, 8, 9])
    if covered:
        types = _types(schema.source)
        assert arrow_table(columns, types).equals(arrow_table(pivoted, types))
    assert plain_columns(columns) == pivoted
