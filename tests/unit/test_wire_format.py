"""The single-object encoding is the Avro specification's, checked against the specification's
published fingerprint vectors and against bytes built here from fastavro and the spec's header."""

from __future__ import annotations

import io
import json
import logging
import struct
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from headwater.core.errors import SchemaError
from headwater.infra.metrics import PlatformMetrics
from headwater.schemas.catalog import AVRO_DIR, SchemaCatalog, crc64_avro
from headwater.schemas.codec import AvroCodec
from headwater.schemas.legacy_framing import LEGACY_READS
from headwater.streams.fast_avro import FastAvro

# Apache Avro, share/test/data/schema-tests.txt: CRC-64-AVRO of the canonical form, as a signed
# 64-bit integer; the single-object header carries it little-endian.
SPEC_VECTORS = [
    ('"null"', 7195948357588979594),
    ('"int"', 8247732601305521295),
    ('"long"', -3434872931120570953),
]

LABEL = {
    "request_id": "r1",
    "entity_id": "c1",
    "event_id": "e1",
    "label": 1.0,
    "event_time_ms": 5,
    "labeled_at_ms": 9,
}


@pytest.mark.parametrize(("canonical", "signed"), SPEC_VECTORS)
def test_fingerprint_matches_the_specifications_vectors(canonical: str, signed: int) -> None:
    assert crc64_avro(canonical) == struct.pack("<q", signed)


def test_null_vector_bytes_as_published() -> None:
    assert crc64_avro('"null"').hex() == "8a8f25cce724dd63"


def _spec_encode(source: dict[str, Any], record: dict[str, Any]) -> bytes:
    """The single-object encoding by the specification, built from fastavro alone."""
    from fastavro.schema import fingerprint

    canonical = to_parsing_canonical_form(source)
    header = b"\xc3\x01" + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(source), record)
    return header + body.getvalue()


def _label_source() -> dict[str, Any]:
    source: dict[str, Any] = json.loads((AVRO_DIR / "label.avsc").read_text())
    return source


def test_codec_writes_the_specifications_bytes() -> None:
    codec = AvroCodec(SchemaCatalog.default())
    assert codec.encode("dev.headwater.Label", LABEL) == _spec_encode(_label_source(), LABEL)
    fast = FastAvro(codec)
    assert fast.encode("dev.headwater.Label", LABEL) == _spec_encode(_label_source(), LABEL)


def test_codec_reads_the_specifications_bytes() -> None:
    codec = AvroCodec(SchemaCatalog.default())
    data = _spec_encode(_label_source(), LABEL)
    assert codec.decode(data) == ("dev.headwater.Label", LABEL)
    assert FastAvro(codec).decode(data, "dev.headwater.Label") == LABEL


@pytest.mark.parametrize("path", sorted(AVRO_DIR.glob("*.avsc")), ids=lambda p: Path(p).stem)
def test_every_platform_schemas_header_is_standard(path: Path) -> None:
    source = json.loads(path.read_text())
    schema = SchemaCatalog.default().get(
        source["name"] if "." in source["name"] else f"{source['namespace']}.{source['name']}"
    )
    from fastavro.schema import fingerprint

    expected = bytes.fromhex(fingerprint(to_parsing_canonical_form(source), "CRC-64-AVRO"))
    assert schema.fingerprint == expected


def test_a_plain_reader_decodes_what_the_codec_writes() -> None:
    data = AvroCodec(SchemaCatalog.default()).encode("dev.headwater.Label", LABEL)
    from fastavro.schema import fingerprint

    source = _label_source()
    assert data[:2] == b"\xc3\x01"
    assert data[2:10].hex() == fingerprint(to_parsing_canonical_form(source), "CRC-64-AVRO")
    assert schemaless_reader(io.BytesIO(data[10:]), parse_schema(source), None) == LABEL


def test_the_old_byte_order_still_reads_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    codec = AvroCodec(SchemaCatalog.default())
    standard = codec.encode("dev.headwater.Label", LABEL)
    old = standard[:2] + standard[2:10][::-1] + standard[10:]
    metrics = PlatformMetrics()
    name = "dev.headwater.Label"
    before = LEGACY_READS.counts().get(name, 0)
    with caplog.at_level(logging.WARNING, logger="headwater.schemas"):
        assert codec.decode(old) == (name, LABEL)
        assert FastAvro(codec).decode(old, name) == LABEL
        codec.decode(standard)  # the standard order is not counted
    assert LEGACY_READS.counts()[name] == before + 2
    assert metrics.value("headwater_legacy_fingerprint_reads_total", schema=name) == before + 2
    logged = [r for r in caplog.records if "old reversed byte order" in r.getMessage()]
    assert len(logged) == (0 if before else 1)


def test_an_unknown_fingerprint_is_still_an_error() -> None:
    codec = AvroCodec(SchemaCatalog.default())
    with pytest.raises(SchemaError, match="unknown schema fingerprint"):
        codec.decode(b"\xc3\x01" + bytes(8) + b"\x00")
