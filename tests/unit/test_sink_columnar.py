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

from headwater.core.errors import SchemaError
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
    decoded = decode_columns(reader, values, 0)
    assert decoded is not None and not decoded.failures
    columns = decoded.fields
    assert list(columns) == [f["name"] for f in SCHEMA["fields"]]
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
    decoded = decode_columns(reader, [record, blocked], 0)
    assert decoded is not None and decoded.fields["ids"].to_pylist() == [[], [1, 2]]


def _why(reader: Any, value: bytes) -> str:
    with pytest.raises(ValueError) as raised:
        reader.decode(value, 0)
    return str(raised.value)


def test_records_that_do_not_decode_are_left_out_and_the_rest_decoded() -> None:
    """Each bad record fails halfway through a different field (a string, a map's value, an
    array's items, a union's branch, trailing bytes): what it had pushed is cut back, so the
    columns of the others equal theirs decoded one by one, and each failure is named as the
    record reader names it."""
    records = [_record(i) for i in range(12)]
    values = _encoded(records)
    reader: Any = native_type(SCHEMA, "Everything")
    assert reader is not None
    whole = len(values[1])
    bad = {
        1: values[1][:3],  # inside the first string
        3: values[3][: whole - 4],  # inside the trailing maps and arrays
        5: values[5][:-1],  # the last union's branch
        6: values[6] + b"\x00",  # a byte left after the record
        8: b"",  # nothing at all
        11: values[11][:-2],  # the last record, cut short
    }
    corrupted = [bad.get(i, value) for i, value in enumerate(values)]
    decoded = decode_columns(reader, corrupted, 0)
    assert decoded is not None
    assert decoded.failures == {i: _why(reader, value) for i, value in bad.items()}
    assert "1 byte(s) left after the record" in decoded.failures[6]
    good = [v for i, v in enumerate(values) if i not in bad]
    assert _same(plain_columns(decoded.fields), _pivoted([reader.decode(v) for v in good]))
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


def test_the_batcher_dead_letters_the_bad_records_and_keeps_the_rest_in_columns() -> None:
    """A truncated record, an empty one and one whose header is garbled go to the reject path
    with the reason the record reader gives; the others still go as Arrow columns."""
    labels = [
        {
            "request_id": f"r{i}",
            "entity_id": f"c{i}",
            "event_id": "",
            "label": i / 2,
            "event_time_ms": i,
            "labeled_at_ms": i + 1,
        }
        for i in range(6)
    ]
    values = [CODEC.encode("dev.headwater.Label", label) for label in labels]
    values[0] = b""  # the first one, empty: the batch's header is the one most carry
    values[2] = values[2][:-3]
    values[4] = b"\x00\x01not avro at all"
    messages = [
        Message(topic="labels", partition=0, offset=10 + i, value=v) for i, v in enumerate(values)
    ]
    rejected: dict[int, str] = {}
    mapping = TableMap("labels", "labels", ("request_id", "entity_id", "label"), frozenset())
    batch, offsets = Batcher(
        {"labels": mapping},
        {"labels": "labels"},
        CODEC,
        lambda m, e: rejected.update({m.offset() or 0: str(e)}),
    ).batch(messages)
    columns = batch["labels"]
    assert isinstance(columns["entity_id"], pa.Array)
    assert plain_columns(columns) == {
        "request_id": ["r1", "r3", "r5"],
        "entity_id": ["c1", "c3", "c5"],
        "label": [0.5, 1.5, 2.5],
        "_partition": [0, 0, 0],
        "_offset": [11, 13, 15],
    }
    decoder = RecordDecoder(CODEC)
    for offset in (10, 12, 14):
        with pytest.raises(SchemaError) as raised:
            decoder.decode(values[offset - 10])
        assert rejected.pop(offset) == str(raised.value)
    assert not rejected
    assert [(o.partition, o.offset) for o in offsets] == [(0, 16)]


def test_a_failure_inside_an_array_or_a_map_names_the_item_as_the_record_reader_does() -> None:
    """The item's index within its own record's array, and a map value by its key, though
    the columns hold the items of every record before it."""
    schema = {
        "type": "record",
        "name": "Nested",
        "fields": [
            {"name": "tags", "type": {"type": "map", "values": "string"}},
            {"name": "names", "type": {"type": "array", "items": "string"}},
        ],
    }
    parsed = parse_schema(schema)
    values = []
    for record in (
        {"tags": {}, "names": ["n", "o"]},
        {"tags": {"a": "x"}, "names": ["p", "q", "rrrr"]},
    ):
        buffer = io.BytesIO()
        schemaless_writer(buffer, parsed, record)
        values.append(buffer.getvalue())
    in_array = values[1][:-2]  # inside the third name
    in_map = values[1][:4]  # the map's key "a", its value cut short
    reader: Any = native_type(schema, "Nested")
    assert reader is not None
    decoded = decode_columns(reader, [values[0], in_array, values[1], in_map], 0)
    assert decoded is not None
    assert decoded.failures == {1: _why(reader, in_array), 3: _why(reader, in_map)}
    assert decoded.failures[1].startswith("Nested: names.2: ")
    assert decoded.failures[3].startswith("Nested: tags.a: ")
    assert plain_columns(decoded.fields) == {
        "tags": [{}, {"a": "x"}],
        "names": [["n", "o"], ["p", "q", "rrrr"]],
    }


def test_a_batch_too_large_for_the_columns_goes_record_by_record() -> None:
    """The one error of a batch rather than of a record (Arrow's 32-bit offsets overflowing):
    no columns, so the sink decodes the batch one by one instead of failing it."""

    class TooLarge:
        def decode_columns(self, values: list[bytes], start: int) -> Any:
            raise ValueError("Everything: s: a column of more than 2 GiB")

    reader: Any = TooLarge()
    assert decode_columns(reader, [b"\x00"], 0) is None
