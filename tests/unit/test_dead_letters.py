"""The one dead-letter constructor: bounded whatever it is given, readable by every version."""

from __future__ import annotations

import hashlib
import io
import json

from fastavro import parse_schema, schemaless_writer

from headwater.schemas.catalog import HISTORY_DIR, AvroSchema, SchemaCatalog
from headwater.schemas.codec import SINGLE_OBJECT_MAGIC, AvroCodec
from headwater.schemas.dead_letters import MAX_ORIGINAL_BYTES, MAX_REASON_CHARS, dead_letter
from headwater.schemas.models import DeadLetter


def test_a_huge_original_and_reason_encode_far_below_the_broker_limit() -> None:
    original = b'{"note": "' + b"x" * 900_000 + b'"}'
    letter = dead_letter(
        "events.raw", 2, 9, "WRONG_TYPE", repr(original) * 2, b"k" * 10**6, original
    )
    encoded = AvroCodec(SchemaCatalog.default()).encode(DeadLetter.SCHEMA, letter.to_avro())
    assert len(encoded) < 2 * MAX_ORIGINAL_BYTES + MAX_REASON_CHARS + 200
    assert letter.original_value == original[:MAX_ORIGINAL_BYTES]
    assert letter.original_size == len(original)
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
    assert letter.reason.endswith("characters, cut)")


def test_a_small_original_is_kept_whole() -> None:
    letter = dead_letter("t", 0, 1, "BAD_ENCODING", "why", None, b"\x00\xff", 7)
    assert (letter.original_value, letter.original_size, letter.failed_at_ms) == (b"\x00\xff", 2, 7)


def test_a_dead_letter_written_with_the_first_schema_still_decodes() -> None:
    """Records already on the topic (schema v1, no size or digest) read as the current version."""
    source = json.loads((HISTORY_DIR / DeadLetter.SCHEMA / "v1.avsc").read_text())
    old = AvroSchema.from_json(source)
    body = io.BytesIO()
    record = {
        "source_topic": "events.raw",
        "source_partition": 1,
        "source_offset": 2,
        "reason_code": "BAD_ENCODING",
        "reason": "old",
        "original_key": None,
        "original_value": b"?",
        "failed_at_ms": 3,
    }
    schemaless_writer(body, parse_schema(source), record)
    data = SINGLE_OBJECT_MAGIC + old.fingerprint + body.getvalue()
    name, decoded = AvroCodec(SchemaCatalog.default()).decode(data)
    assert name == DeadLetter.SCHEMA
    letter = DeadLetter.from_avro(decoded)
    assert (letter.original_value, letter.original_size, letter.original_sha256) == (b"?", -1, "")
