"""An application upgrades its event schema without a schema registry: the records it sent with
the earlier version, still on ``events.raw``, are read into the current one when the earlier
file is listed after it in ``HEADWATER_EVENT_SCHEMA_FILE``; an incompatible or unrelated file
fails at load, naming it. No Kafka: the bytes are written with fastavro alone, as a plain
application writes them (the specification's single-object encoding)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from headwater.core.errors import SchemaError
from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.codec import AvroCodec
from headwater.schemas.domain import load_domain
from headwater.streams.anomalies import ReasonCode
from headwater.streams.validation import EventValidator

V1: dict[str, Any] = {
    "type": "record",
    "name": "Reading",
    "namespace": "acme.meters",
    "entity_key": "meter_id",
    "event_time": "at_ms",
    "event_id": "reading_id",
    "fields": [
        {"name": "reading_id", "type": "string"},
        {"name": "meter_id", "type": "string"},
        {"name": "at_ms", "type": "long"},
        {"name": "kwh", "type": "float"},
    ],
}
# v2 widens kwh to a double and adds a field with a default: old records stay readable.
V2 = {
    **V1,
    "fields": [
        *V1["fields"][:3],
        {"name": "kwh", "type": "double"},
        {"name": "site", "type": "string", "default": "unknown"},
    ],
}


def written(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """Single-object encoding, from the specification alone: C3 01, the schema's CRC-64-AVRO
    fingerprint (little-endian), the binary body."""
    canonical = to_parsing_canonical_form(schema)
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(schema), record)
    return b"\xc3\x01" + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")) + body.getvalue()


def files(tmp_path: Path, **schemas: dict[str, Any]) -> dict[str, str]:
    paths = {}
    for name, schema in schemas.items():
        path = tmp_path / f"{name}.avsc"
        path.write_text(json.dumps(schema))
        paths[name] = str(path)
    return paths


def validator(setting: str) -> EventValidator:
    codec = AvroCodec(SchemaCatalog.default())
    return EventValidator(load_domain(codec.catalog, setting), codec)


OLD_RECORD = {"reading_id": "r1", "meter_id": "m1", "at_ms": 1_700_000_000_000, "kwh": 1.5}


def test_records_of_a_listed_earlier_version_are_read_into_the_current_one(
    tmp_path: Path,
) -> None:
    paths = files(tmp_path, v1=V1, v2=V2)
    current = validator(os.pathsep.join([paths["v2"], paths["v1"]]))
    event = current.validate(written(V1, OLD_RECORD), 0, 4)
    assert not isinstance(event, list), event
    assert (event["event_id"], event["event_time_ms"]) == ("r1", 1_700_000_000_000)
    assert event["numeric"] == {"kwh": 1.5}
    assert event["categorical"] == {"site": "unknown"}  # v2's default
    new = current.validate(written(V2, {**OLD_RECORD, "reading_id": "r2", "site": "north"}), 0, 5)
    assert not isinstance(new, list) and new["categorical"] == {"site": "north"}


def test_an_unlisted_earlier_version_is_dead_lettered_saying_how_to_read_it(
    tmp_path: Path,
) -> None:
    paths = files(tmp_path, v1=V1, v2=V2)
    found = validator(paths["v2"]).validate(written(V1, OLD_RECORD), 0, 4)
    assert isinstance(found, list) and found[0].code == ReasonCode.UNKNOWN_SCHEMA
    assert "HEADWATER_EVENT_SCHEMA_FILE" in found[0].reason


def test_an_earlier_version_the_current_cannot_read_fails_at_load_naming_both(
    tmp_path: Path,
) -> None:
    no_default = {**V2, "fields": [*V1["fields"], {"name": "site", "type": "string"}]}
    paths = files(tmp_path, v1=V1, v2=no_default)
    with pytest.raises(SchemaError, match=r"v2.avsc cannot read .*v1.avsc: .*site"):
        validator(os.pathsep.join([paths["v2"], paths["v1"]]))


def test_a_listed_file_of_another_record_fails_at_load(tmp_path: Path) -> None:
    paths = files(tmp_path, v2=V2, other={**V1, "name": "Invoice"})
    with pytest.raises(SchemaError, match=r"other.avsc is acme.meters.Invoice, not an earlier"):
        validator(os.pathsep.join([paths["v2"], paths["other"]]))
