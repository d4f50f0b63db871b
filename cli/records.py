"""``headwater produce | consume | query``: records in and out, and SQL on the warehouse."""

from __future__ import annotations

import argparse
import base64
import json
import sys
import uuid
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from headwater.client import Client
from headwater.core.errors import HeadwaterError, SchemaError
from headwater.core.settings import load_settings
from headwater.infra.event_bus import make_codec, read_topic
from headwater.infra.warehouse import connect_warehouse
from headwater.schemas.domain import load_domain
from headwater.schemas.topics import TOPICS


def register(subparsers: Any) -> None:
    produce = subparsers.add_parser(
        "produce", help="send JSON lines to a topic, validated and Avro-encoded"
    )
    produce.add_argument("topic", choices=list(TOPICS), metavar="TOPIC")
    produce.add_argument(
        "--file", type=Path, default=Path("-"), help="JSON lines (default and '-': stdin)"
    )
    produce.add_argument("--json", action="store_true", help="print the result as JSON")
    produce.set_defaults(handler=_produce)

    consume = subparsers.add_parser("consume", help="print a topic's records as JSON lines")
    consume.add_argument("topic", choices=list(TOPICS), metavar="TOPIC")
    consume.add_argument("--from-beginning", action="store_true")
    consume.add_argument("--max", type=int, default=None, help="stop after N records")
    consume.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="stop when no record came for this many seconds (default 10)",
    )
    consume.add_argument(
        "--group", default="", help="consumer group; its offsets are committed (default: none kept)"
    )
    consume.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per record with partition, offset, key and value",
    )
    consume.set_defaults(handler=_consume)

    query = subparsers.add_parser("query", help="run SQL on the warehouse")
    query.add_argument("sql")
    query.add_argument("--json", action="store_true", help="rows as a JSON array of objects")
    query.set_defaults(handler=_query)


def _produce(args: argparse.Namespace) -> int:
    client = Client(load_settings())
    stream = sys.stdin if str(args.file) == "-" else args.file.open()
    sent, rejected = 0, []
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                client.send(args.topic, _json_line(line))
                sent += 1
            except (HeadwaterError, ValueError) as error:
                reason = str(error).replace("\n", " ")
                rejected.append({"line": number, "reason": reason})
                print(f"line {number}: {reason}", file=sys.stderr)
    client.flush()
    if args.json:
        print(json.dumps({"topic": args.topic, "sent": sent, "rejected": rejected}))
    else:
        print(f"sent {sent} record(s) to {args.topic}; rejected {len(rejected)}")
    return 1 if rejected else 0


def _json_line(line: str) -> Any:
    """One line's JSON value; a line that is not JSON says so, not only what the parser met.

    >>> _json_line('{"a": 1}')
    {'a': 1}
    >>> _json_line("not json")
    Traceback (most recent call last):
    ...
    ValueError: not JSON: invalid literal, expected 'null': line 1 column 1 (char 0)
    """
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None


def _jsonable(value: Any) -> Any:
    """A decoded Avro value as JSON: bytes in base64, and the values of logical types (a
    timestamp's datetime, a date, a decimal, a uuid) as ISO 8601 or decimal text.

    >>> _jsonable({"at": datetime(2026, 12, 8, 4, 0), "price": Decimal("1.50")})
    {'at': '2026-12-08T04:00:00', 'price': '1.50'}
    """
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _json_object(value: bytes | None) -> dict[str, Any] | None:
    """The JSON object in ``value``, or None if it holds none.

    >>> _json_object(b'{"ride_id": "r1"}'), _json_object(b"\\x00avro"), _json_object(b"[1]")
    ({'ride_id': 'r1'}, None, None)
    """
    try:
        found = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


def _consume(args: argparse.Namespace) -> int:
    settings = load_settings()
    codec = make_codec(settings)
    load_domain(codec.catalog, settings.event_schema_file)
    group = args.group or f"headwater-consume-{uuid.uuid4().hex[:8]}"
    records = read_topic(
        settings,
        args.topic,
        group=group,
        from_beginning=args.from_beginning,
        max_records=args.max,
        idle_timeout_s=args.timeout,
        commit=bool(args.group),
    )
    for received in records:
        try:
            _, value = codec.decode(received.value)
            decoded: Any = _jsonable(value)
        except SchemaError as error:
            # events.raw also takes JSON objects (the feature worker validates them).
            as_json = _json_object(received.value) if args.topic == "events.raw" else None
            decoded = as_json or {"undecodable": str(error), "bytes": _jsonable(received.value)}
        if args.json:
            key = received.key.decode(errors="replace") if received.key else None
            line = {
                "partition": received.partition,
                "offset": received.offset,
                "key": key,
                "timestamp_ms": received.timestamp_ms,
                "value": decoded,
            }
            print(json.dumps(line), flush=True)
        else:
            print(json.dumps(decoded), flush=True)
    return 0


def _query(args: argparse.Namespace) -> int:
    warehouse = connect_warehouse(load_settings())
    try:
        result = warehouse.query(args.sql)
    finally:
        warehouse.close()
    if args.json:
        print(json.dumps(result.dicts(), default=str))
    else:
        print("\t".join(result.columns))
        for row in result.rows:
            print("\t".join(str(v) for v in row))
    return 0
