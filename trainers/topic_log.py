"""Reading a whole topic up to its current end, for views rebuilt by replay (the registry).

Unlike a consumer that waits for silence, :func:`read_to_end` asks each partition for its end
offset first and stops once every partition got there, so a replay of an idle topic costs one
round trip instead of a timeout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from headwater.core.errors import BrokerUnavailable, SchemaError
from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import make_codec
from headwater.infra.kafka_clients import cluster_metadata, make_consumer
from headwater.schemas.models import EventModel

M = TypeVar("M", bound=EventModel)


@dataclass(frozen=True)
class LogRecord:
    partition: int
    offset: int
    value: bytes


def read_to_end(settings: HeadwaterSettings, topic: str) -> Iterator[LogRecord]:
    """Every record of ``topic`` (a DESIGN.md name) from the beginning to the current end."""
    name = settings.topic(topic)
    metadata = cluster_metadata(settings).topics.get(name)
    if metadata is None:
        raise BrokerUnavailable(f"topic {name} does not exist on {settings.bootstrap_servers}")
    consumer = make_consumer(settings, f"headwater-replay-{uuid.uuid4().hex[:8]}")
    try:
        ends: dict[int, int] = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(name, partition), timeout=settings.kafka_timeout_s
            )
            if high > low:
                ends[partition] = high
        if not ends:
            return
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in ends])
        yield from _drain(consumer, name, ends, settings.kafka_timeout_s)
    finally:
        consumer.close()


def _drain(
    consumer: Consumer, name: str, ends: dict[int, int], timeout_s: float
) -> Iterator[LogRecord]:
    pending = dict(ends)
    deadline = time.monotonic() + timeout_s * 3
    while pending:
        message = consumer.poll(0.5)
        if message is None:
            # Transaction markers occupy offsets no record reaches: ask the positions.
            for tp in consumer.position([TopicPartition(name, p) for p in list(pending)]):
                if tp.offset >= pending.get(tp.partition, 0):
                    pending.pop(tp.partition, None)
            if pending and time.monotonic() > deadline:
                raise BrokerUnavailable(f"replaying {name}: partitions {sorted(pending)} stalled")
            continue
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                continue
            raise BrokerUnavailable(f"replaying {name}: {error.str()}")
        partition, offset = message.partition() or 0, message.offset() or 0
        deadline = time.monotonic() + timeout_s * 3
        yield LogRecord(partition, offset, message.value() or b"")
        if offset + 1 >= pending.get(partition, 0):
            pending.pop(partition, None)


def read_events(
    settings: HeadwaterSettings, topic: str, model: type[M]
) -> tuple[list[tuple[LogRecord, M]], list[tuple[LogRecord, str]]]:
    """Decoded events of a whole topic, and the records that did not decode (with why)."""
    codec = make_codec(settings)
    good: list[tuple[LogRecord, M]] = []
    bad: list[tuple[LogRecord, str]] = []
    for record in read_to_end(settings, topic):
        try:
            _, fields = codec.decode(record.value, model.SCHEMA)
            good.append((record, model.from_avro(fields)))
        except (SchemaError, ValueError) as error:
            bad.append((record, str(error)))
    return good, bad
