"""Reading a whole topic up to its current end, for views rebuilt by replay (the registry).

Unlike a consumer that waits for silence, :func:`read_to_end` asks each partition for its end
offset first and stops once every partition got there, so a replay of an idle topic costs one
round trip instead of a timeout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
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


class TopicTail:
    """Reads one topic from its beginning, each :meth:`read_new` up to the end it has then.

    A writer that must know everything written before it acts (the registry allocating a
    version number) calls :meth:`read_new` right before acting: it returns once every partition
    was read to the end offset it had when the call began. Reads are read-committed, so aborted
    transactions never show.
    """

    def __init__(self, settings: HeadwaterSettings, topic: str) -> None:
        self.settings = settings
        self.name = settings.topic(topic)
        # The consumer reading the topic, and a client that only asks for its end offsets.
        self._clients: tuple[Consumer, Consumer] | None = None
        self._next: dict[int, int] = {}  # partition -> next offset to read

    def read_new(self) -> list[LogRecord]:
        """Every record appended since the last call (the first call: since the beginning)."""
        consumer, end_offsets = self._clients or self._open()
        ends: dict[int, int] = {}
        for partition in self._next:
            # Asked by a client of its own: on the reading consumer's connection the answer
            # waited behind its fetch long-polling at the end, up to fetch.wait.max.ms a
            # partition (a registry catch-up took 1 s over 3, before every promotion).
            _, high = end_offsets.get_watermark_offsets(
                TopicPartition(self.name, partition), timeout=self.settings.kafka_timeout_s
            )
            if high > self._next[partition]:
                ends[partition] = high
        records = list(_drain(consumer, self.name, ends, self.settings.kafka_timeout_s))
        for record in records:
            self._next[record.partition] = record.offset + 1
        for tp in consumer.position([TopicPartition(self.name, p) for p in self._next]):
            if tp.offset >= 0:  # past transaction markers, which no record reaches
                self._next[tp.partition] = max(self._next[tp.partition], tp.offset)
        return records

    def close(self) -> None:
        if self._clients is not None:
            for client in self._clients:
                client.close()
            self._clients = None

    def _open(self) -> tuple[Consumer, Consumer]:
        metadata = cluster_metadata(self.settings).topics.get(self.name)
        if metadata is None:
            raise BrokerUnavailable(
                f"topic {self.name} does not exist on {self.settings.bootstrap_servers}"
            )
        group = f"headwater-replay-{uuid.uuid4().hex[:8]}"
        consumer = make_consumer(self.settings, group)
        self._next = {p: 0 for p in metadata.partitions}
        consumer.assign([TopicPartition(self.name, p, OFFSET_BEGINNING) for p in self._next])
        # Never assigned: it fetches nothing, so the broker answers it at once.
        self._clients = (consumer, make_consumer(self.settings, group))
        return self._clients


def read_to_end(settings: HeadwaterSettings, topic: str) -> Iterator[LogRecord]:
    """Every record of ``topic`` (a DESIGN.md name) from the beginning to the current end."""
    tail = TopicTail(settings, topic)
    try:
        yield from tail.read_new()
    finally:
        tail.close()


def _drain(
    consumer: Consumer, name: str, ends: dict[int, int], timeout_s: float
) -> Iterator[LogRecord]:
    pending = dict(ends)
    deadline = time.monotonic() + timeout_s * 3
    while pending:
        message = consumer.poll(0.1)
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
        # Records past an end (appended since it was asked) are kept too: skipping one would
        # lose it, the position having moved past it.
        yield LogRecord(partition, offset, message.value() or b"")
        if offset + 1 >= pending.get(partition, offset + 1):
            pending.pop(partition, None)


def decode_records(
    settings: HeadwaterSettings, records: Iterable[LogRecord], model: type[M]
) -> tuple[list[tuple[LogRecord, M]], list[tuple[LogRecord, str]]]:
    """Decoded events of ``records``, and the records that did not decode (with why)."""
    codec = make_codec(settings)
    good: list[tuple[LogRecord, M]] = []
    bad: list[tuple[LogRecord, str]] = []
    for record in records:
        try:
            _, fields = codec.decode(record.value, model.SCHEMA)
            good.append((record, model.from_avro(fields)))
        except (SchemaError, ValueError) as error:
            bad.append((record, str(error)))
    return good, bad


def read_events(
    settings: HeadwaterSettings, topic: str, model: type[M]
) -> tuple[list[tuple[LogRecord, M]], list[tuple[LogRecord, str]]]:
    """Decoded events of a whole topic, and the records that did not decode (with why)."""
    return decode_records(settings, read_to_end(settings, topic), model)
