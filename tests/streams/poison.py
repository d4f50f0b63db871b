"""Valid and poison records of the demo domain, each poison one with the reason code it earns."""

from __future__ import annotations

import io
import struct
from typing import Any

import orjson
from fastavro import schemaless_writer

from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.codec import AvroCodec

TRANSACTION = "dev.headwater.demo.Transaction"


def transaction(i: int, card: str = "card-1", t: int | None = None, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": f"tx-{i}",
        "card_id": card,
        "event_time_ms": 1_700_000_000_000 + i * 1000 if t is None else t,
        "amount": 10.0 + i,
        "merchant_category": "grocery",
        "country": "NL",
        "channel": "pos",
        "distance_km": 1.5,
        "hour_of_day": 12,
    }
    record.update(extra)
    return record


def poison_records(codec: AvroCodec) -> list[tuple[bytes, str]]:
    """(value bytes, expected reason code) for each kind of bad record."""
    good = transaction(0)
    avro = codec.encode(TRANSACTION, good)
    label = codec.encode(
        "dev.headwater.Label",
        {"entity_id": "c", "label": 1.0, "event_time_ms": 1, "labeled_at_ms": 2},
    )
    foreign = io.BytesIO()
    schemaless_writer(foreign, SchemaCatalog.default().get(TRANSACTION).parsed, good)
    return [
        (b"\xff\xfe\x00 not text", "BAD_ENCODING"),
        (b"", "BAD_ENCODING"),
        (b'{"event_id": "x", ', "BAD_ENCODING"),
        (b"[1, 2, 3]", "NOT_A_RECORD"),
        (orjson.dumps({k: v for k, v in good.items() if k != "amount"}), "MISSING_FIELD"),
        (orjson.dumps({**good, "amount": "12.5"}), "WRONG_TYPE"),
        (orjson.dumps({**good, "amount": -5.0}), "OUT_OF_RANGE"),
        (orjson.dumps({**good, "hour_of_day": 31}), "OUT_OF_RANGE"),
        (orjson.dumps({**good, "merchant_category": "casino"}), "UNKNOWN_CATEGORY"),
        (orjson.dumps({**good, "cvv": "123"}), "UNKNOWN_FIELD"),
        (orjson.dumps({**good, "card_id": ""}), "EMPTY_VALUE"),
        (b"\xc3\x01" + b"\x11" * 8 + foreign.getvalue(), "UNKNOWN_SCHEMA"),
        (struct.pack(">bI", 0, 42) + foreign.getvalue(), "UNKNOWN_SCHEMA"),
        (label, "SCHEMA_MISMATCH"),
        (avro[:14], "BAD_ENCODING"),
    ]
