"""A user's event time as the Avro specification lets them declare it: a long of milliseconds or a
timestamp logical type, read from Avro (both framings decode it to a datetime) and from JSON (a
long); a field that cannot hold a time fails when the domain loads, naming it. No Kafka."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from headwater.core.errors import SchemaError
from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.codec import AvroCodec
from headwater.schemas.domain import load_domain
from headwater.streams.anomalies import ReasonCode
from headwater.streams.validation import EventValidator

AT = datetime(2026, 12, 8, 4, 0, 1, 234567, tzinfo=UTC)
AT_MS = 1_796_702_401_234  # AT in whole milliseconds since the epoch


def meter_schema(path: Path, time_type: Any, kwh_type: Any = "double") -> str:
    schema = {
        "type": "record",
        "name": "MeterReading",
        "namespace": "acme.energy",
        "entity_key": "meter_id",
        "event_time": "read_at",
        "event_id": "reading_id",
        "fields": [
            {"name": "reading_id", "type": "string"},
            {"name": "meter_id", "type": "string"},
            {"name": "read_at", "type": time_type},
            {"name": "kwh", "type": kwh_type},
            {"name": "phase", "type": {"type": "enum", "name": "Phase", "symbols": ["A", "B"]}},
        ],
    }
    file = path / "meter.avsc"
    file.write_text(json.dumps(schema))
    return str(file)


def validator_for(path: Path, time_type: Any, kwh_type: Any = "double") -> EventValidator:
    codec = AvroCodec(SchemaCatalog.default())
    domain = load_domain(codec.catalog, meter_schema(path, time_type, kwh_type))
    return EventValidator(domain, codec)


def reading(read_at: Any, kwh: Any = 1.5) -> dict[str, Any]:
    return {"reading_id": "r1", "meter_id": "m1", "read_at": read_at, "kwh": kwh, "phase": "A"}


@pytest.mark.parametrize(
    ("time_type", "sent"),
    [
        ("long", AT_MS),
        ({"type": "long", "logicalType": "timestamp-millis"}, AT_MS),
        ({"type": "long", "logicalType": "timestamp-millis"}, AT),
        ({"type": "long", "logicalType": "timestamp-micros"}, AT_MS * 1000 + 567),
        ({"type": "long", "logicalType": "timestamp-micros"}, AT),
        ({"type": "long", "logicalType": "local-timestamp-millis"}, AT_MS),
    ],
)
def test_an_event_time_of_any_timestamp_type_is_read_in_milliseconds(
    tmp_path: Path, time_type: Any, sent: Any
) -> None:
    validator = validator_for(tmp_path, time_type)
    domain = validator.domain
    encoded = validator.codec.encode(domain.name, reading(sent))
    from_avro = validator.validate(encoded, 0, 7)
    assert not isinstance(from_avro, list), from_avro
    assert from_avro["event_time_ms"] == AT_MS
    # JSON carries a logical type as its underlying long (the Avro specification's JSON form).
    as_long = sent if isinstance(sent, int) else AT_MS * domain.event_time_units_per_ms
    from_json = validator.validate(orjson.dumps(reading(as_long)), 0, 7)
    assert not isinstance(from_json, list), from_json
    assert from_json["event_time_ms"] == AT_MS


def test_an_event_time_that_is_not_a_long_is_dead_lettered_naming_the_field(
    tmp_path: Path,
) -> None:
    validator = validator_for(tmp_path, {"type": "long", "logicalType": "timestamp-millis"})
    for sent in ("2026-12-08T04:00:01Z", 1.5e12, -5):
        found = validator.validate(orjson.dumps(reading(sent)), 0, 1)
        assert isinstance(found, list)
        assert (found[0].code, found[0].field) == (ReasonCode.OUT_OF_RANGE, "read_at")


@pytest.mark.parametrize(
    "time_type", ["string", "int", "double", {"type": "int", "logicalType": "date"}]
)
def test_a_domain_whose_event_time_cannot_hold_a_time_fails_at_load(
    tmp_path: Path, time_type: Any
) -> None:
    with pytest.raises(SchemaError, match=r"event_time field 'read_at' is .*timestamp-millis"):
        validator_for(tmp_path, time_type)


def test_a_primitive_written_as_a_type_object_is_checked_as_that_primitive(
    tmp_path: Path,
) -> None:
    validator = validator_for(tmp_path, "long", kwh_type={"type": "double"})
    not_finite = validator.validate(
        validator.codec.encode(validator.domain.name, reading(AT_MS, kwh=float("nan"))), 0, 1
    )
    wrong_type = validator.validate(orjson.dumps(reading(AT_MS, kwh="lots")), 0, 2)
    assert isinstance(not_finite, list) and not_finite[0].code == ReasonCode.NON_FINITE
    assert isinstance(wrong_type, list) and wrong_type[0].code == ReasonCode.WRONG_TYPE
