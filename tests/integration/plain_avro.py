"""A Kafka client written from the Avro specification alone, as a user's application would be:
confluent-kafka, fastavro and the platform's ``.avsc`` files, nothing of Headwater (a test
checks this module imports none of it).

Single-object encoding (Avro specification, "Single-object encoding"): the two bytes ``C3 01``,
the 8-byte little-endian CRC-64-AVRO fingerprint of the schema's parsing canonical form, then
the Avro binary body.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

MAGIC = b"\xc3\x01"


class PlainSchemas:
    """The schemas of some ``.avsc`` files by full name and by fingerprint."""

    def __init__(self, files: Iterable[Path]) -> None:
        self.parsed: dict[str, Any] = {}
        self.header: dict[str, bytes] = {}
        self.by_header: dict[bytes, str] = {}
        for path in files:
            source = json.loads(path.read_text())
            name = source["name"]
            if "." not in name and source.get("namespace"):
                name = f"{source['namespace']}.{name}"
            canonical = to_parsing_canonical_form(source)
            # fastavro gives the hex of the fingerprint's little-endian bytes.
            header = MAGIC + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
            self.parsed[name] = parse_schema(source)
            self.header[name] = header
            self.by_header[header] = name

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        body = io.BytesIO()
        schemaless_writer(body, self.parsed[name], record)
        return self.header[name] + body.getvalue()

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        name = self.by_header[data[:10]]  # KeyError: not a schema of ours, or not standard
        record = schemaless_reader(io.BytesIO(data[10:]), self.parsed[name], None)
        assert isinstance(record, dict)
        return name, record


def produce(bootstrap: str, messages: Iterable[tuple[str, bytes, bytes]]) -> None:
    """Send ``(topic, key, value)`` and wait for every acknowledgement."""
    producer = Producer({"bootstrap.servers": bootstrap})
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    for topic, key, value in messages:
        producer.produce(topic, value, key, on_delivery=delivered)
    assert producer.flush(60) == 0 and not failures, failures


def consume(
    bootstrap: str, topics: list[str], group: str, until: Any, timeout_s: float = 60.0
) -> list[tuple[str, bytes]]:
    """``(topic, value)`` of every record read from the start until ``until(records)`` holds."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe(topics)
    records: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until(records):
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            records.append((message.topic() or "", message.value() or b""))
    finally:
        consumer.close()
    return records
