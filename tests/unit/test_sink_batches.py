"""The sink's batches as columns: decoding in one pass, and every record that does not decode
or fit its table rejected on its own while the rest still make the batch."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Message

from headwater.core.errors import SchemaError
from headwater.infra.warehouse import (
    arrow_table,
    column_count,
    columns_of,
    json_columns,
    plain_columns,
)
from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.codec import AvroCodec
from headwater.schemas.models import Label
from headwater.streams.sink import Batcher, RecordDecoder, TableMap

CODEC = AvroCodec(SchemaCatalog.default())
LABELS = TableMap(
    "labels", "labels", ("entity_id", "label", "event_time_ms"), frozenset(), with_topic=True
)
RUNS = TableMap("runs", "runs", ("run_id", "params"), frozenset({"params"}))


def _label(i: int) -> bytes:
    label = Label(entity_id=f"c{i}", label=float(i), event_time_ms=i, labeled_at_ms=i)
    return CODEC.encode(Label.SCHEMA, label.to_avro())


def _messages(values: list[bytes], topic: str = "p-labels", first: int = 0) -> list[Message]:
    return [
        Message(topic=topic, partition=i % 2, offset=first + i, value=value)
        for i, value in enumerate(values)
    ]


def _batcher(rejected: list[tuple[int, str]]) -> Batcher:
    def reject(message: Message, error: Exception) -> None:
        rejected.append((message.offset() or 0, type(error).__name__))

    return Batcher({"labels": LABELS, "runs": RUNS}, {"p-labels": "labels"}, CODEC, reject)


def test_decode_all_matches_the_codec_and_finds_each_bad_record() -> None:
    values = [_label(0), _label(1)[:-2], b"", _label(3), b"\x00\x00\x00\x00\x01junk"]
    records, failures = RecordDecoder(CODEC).decode_all(values)
    assert records == [CODEC.decode(values[0])[1], CODEC.decode(values[3])[1]]
    assert sorted(failures) == [1, 2, 4]
    assert all(isinstance(e, SchemaError) for e in failures.values())
    assert "empty" in str(failures[2])


def test_decode_all_of_good_records_is_the_codec_s_decode() -> None:
    values = [_label(i) for i in range(50)]
    records, failures = RecordDecoder(CODEC).decode_all(values)
    assert not failures and records == [CODEC.decode(v)[1] for v in values]
    assert RecordDecoder(CODEC).decode_all([]) == ([], {})


def test_batch_columns_and_offsets_without_the_rejected() -> None:
    rejected: list[tuple[int, str]] = []
    values = [_label(i) for i in range(6)]
    values[2] = b"\xc3\x01not avro at all"
    batch, offsets = _batcher(rejected).batch(_messages(values, first=10))
    assert rejected == [(12, "SchemaError")]
    columns = plain_columns(batch["labels"])
    assert columns["entity_id"] == ["c0", "c1", "c3", "c4", "c5"]
    assert columns["_offset"] == [10, 11, 13, 14, 15]
    assert columns["_partition"] == [0, 1, 1, 0, 1]
    assert columns["_topic"] == ["p-labels"] * 5
    # the offset after each partition's last message, rejected ones included
    assert sorted((o.topic, o.partition, o.offset) for o in offsets) == [
        ("p-labels", 0, 15),
        ("p-labels", 1, 16),
    ]


def test_a_record_that_does_not_fit_its_table_is_rejected_alone() -> None:
    rejected: list[tuple[int, str]] = []
    batcher = _batcher(rejected)
    narrow = TableMap("labels", "labels", ("entity_id", "no_such_field"), frozenset())
    batcher._maps = {"labels": narrow}  # a table with a column the records lack
    batch, _ = batcher.batch(_messages([_label(0), _label(1)]))
    assert [r[1] for r in rejected] == ["KeyError", "KeyError"]
    assert batch["labels"]["_offset"] == []


def test_columns_of_stringifies_maps_and_refuses_a_map_that_is_not_one() -> None:
    records: list[dict[str, Any]] = [{"run_id": "r", "params": {"depth": 3, "lr": 0.5}}]
    columns = RUNS.columns_of(records, "runs", [0], [1])
    assert columns["params"] == [{"depth": "3", "lr": "0.5"}]
    with pytest.raises(AttributeError):
        RUNS.columns_of([{"run_id": "r", "params": 3}], "runs", [0], [1])


def test_rows_and_columns_of_the_warehouse() -> None:
    assert columns_of(["a", "b"], [[1, "x"], [2, "y"]]) == {"a": [1, 2], "b": ["x", "y"]}
    with pytest.raises(ValueError, match="a row of 1 values"):
        columns_of(["a", "b"], [[1, "x"], [2]])
    with pytest.raises(ValueError, match="differ in length"):
        column_count({"a": [1, 2], "b": ["x"]})
    assert json_columns({"raw": [b"x"]}) is None


def test_arrow_table_types_columns_after_the_table_or_refuses() -> None:
    types = {
        "m": "Map(String, String)",
        "f": "Map(String, Float64)",
        "a": "Array(Int32)",
        "n": "Nullable(String)",
        "b": "Bool",
    }
    table = arrow_table(
        {
            "m": [{"k": "v"}, {}],
            "f": [{"x": float("nan")}, {"y": 1}],
            "a": [[1, 2], []],
            "n": [None, "é"],
            "b": [True, False],
        },
        types,
    )
    assert [str(t) for t in table.schema.types] == [
        "map<string, binary>",
        "map<string, double>",
        "list<item: int64>",
        "binary",
        "bool",
    ]
    assert table.column("n").to_pylist() == [None, "é".encode()]
    with pytest.raises((TypeError, ValueError)):
        arrow_table({"f": [{"x": "not a number"}]}, types)
    with pytest.raises(TypeError):
        arrow_table({"f": [None]}, types)  # a map that is not one
