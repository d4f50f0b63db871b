"""A poison barrage: valid records of the demo domain mixed with bad ones of many kinds, each bad
one with the reason code it earns (issue 15: one bad record must never stop the feature worker).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import orjson

from headwater.schemas.codec import AvroCodec
from tests.streams.poison import TRANSACTION, poison_records, transaction

BIG = 900_000  # a string field of about 900 KB: its dead letter once crossed the 1 MB limit
OVERSIZED = 1_030_000  # fits on events.raw, but its `events` record would exceed 1,000,000 bytes


@dataclass
class Barrage:
    """The records in the order sent: (key, value, expected reason code or "" when valid)."""

    records: list[tuple[bytes, bytes, str]] = field(default_factory=list)

    @property
    def valid(self) -> int:
        return sum(1 for _, _, code in self.records if not code)

    def bad(self) -> list[tuple[bytes, str]]:
        return [(value, code) for _, value, code in self.records if code]


def _bad_kinds(codec: AvroCodec, i: int, now_ms: int) -> list[tuple[bytes, str]]:
    """Every kind of bad record, made distinct by ``i``."""
    good = transaction(i, card=f"card-{i % 7}")
    nan = codec.encode(TRANSACTION, {**good, "amount": float("nan")})
    return [
        *poison_records(codec),  # garbage, empty, truncated Avro and JSON, arrays, foreign schemas
        (orjson.dumps({**good, "event_time_ms": -5}), "OUT_OF_RANGE"),
        (orjson.dumps({**good, "event_time_ms": now_ms + 3_600_000}), "FUTURE_EVENT"),
        (nan, "NON_FINITE"),
        (orjson.dumps({**good, "amount": None}), "MISSING_FIELD"),
        (orjson.dumps({**good, "hour_of_day": "noon"}), "WRONG_TYPE"),
        (orjson.dumps({**good, "event_id": ""}), "EMPTY_VALUE"),
        (b"null", "NOT_A_RECORD"),
        (b'"just a string"', "NOT_A_RECORD"),
    ]


def _big_bad(i: int, now_ms: int) -> list[tuple[bytes, str]]:
    good = transaction(i, card=f"card-{i % 7}", t=now_ms - 3_600_000 + i * 10)  # on time
    return [
        (orjson.dumps({**good, "amount": "9" * BIG}), "WRONG_TYPE"),
        (orjson.dumps({**good, "note": "x" * BIG}), "UNKNOWN_FIELD"),
        (orjson.dumps({**good, "merchant_category": "m" * BIG}), "UNKNOWN_CATEGORY"),
        (orjson.dumps({**good, "country": "c" * OVERSIZED}), "RECORD_TOO_LARGE"),
    ]


def barrage(codec: AvroCodec, total: int, big: int, seed: int = 15) -> Barrage:
    """About 70% valid and 30% bad records, ``big`` of the bad ones about 900 KB or more; valid
    events have increasing times per card (none late), a few with a 100 KB country."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    out = Barrage()
    bad_left = total * 3 // 10
    big_left = big
    for i in range(total):
        if rng.random() < 0.3 and bad_left:
            bad_left -= 1
            if big_left and rng.random() < 0.2:
                big_left -= 1
                kinds = _big_bad(i, now_ms)
            else:
                kinds = _bad_kinds(codec, i, now_ms)
            value, code = kinds[rng.randrange(len(kinds))]
            out.records.append((f"card-{i % 7}".encode(), value, code))
            continue
        card = f"card-{i % 7}"
        record = transaction(i, card=card, t=now_ms - 3_600_000 + i * 10)
        if i % 97 == 0:
            record["country"] = "k" * 100_000  # valid, large, kept whole
        value = codec.encode(TRANSACTION, record) if i % 2 else orjson.dumps(record)
        out.records.append((card.encode(), value, ""))
    return out
