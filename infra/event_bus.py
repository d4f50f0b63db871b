"""Sending and reading the platform's typed events on Kafka.

:class:`EventBus` encodes with the configured wire format (:mod:`headwater.schemas.codec`) and keys
each
record as its topic's spec says. It is the one way platform code writes events outside Faust.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from headwater.core.errors import BrokerUnavailable, RecordRefused, RecordTooLarge
from headwater.core.settings import HeadwaterSettings
from headwater.infra.kafka_clients import make_consumer, make_producer, refuses_the_record
from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.codec import AvroCodec, ConfluentSchemaRegistry
from headwater.schemas.domain import Domain, load_domain
from headwater.schemas.models import EventModel
from headwater.schemas.topics import topic_spec


def make_codec(settings: HeadwaterSettings, catalog: SchemaCatalog | None = None) -> AvroCodec:
    """The codec of these settings: Confluent framing with a registry, single-object without."""
    registry = (
        ConfluentSchemaRegistry(settings.schema_registry_url.get_secret_value())
        if settings.schema_registry_url.get_secret_value()
        else None
    )
    return AvroCodec(catalog or SchemaCatalog.default(), registry)


# librdkafka's default ``message.max.bytes``: the largest record a producer sends unless the
# settings' Kafka configuration says otherwise.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000


class EventBus:
    """Produces typed events to the platform's topics."""

    def __init__(self, settings: HeadwaterSettings, **producer_overrides: Any) -> None:
        self.settings = settings
        self.codec = make_codec(settings)
        self.domain: Domain = load_domain(self.codec.catalog, settings.event_schema_file)
        self._producer = make_producer(settings, **producer_overrides)
        self._errors: list[str] = []

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._errors.append(f"{message.topic()}: {error.str()}")

    def send(self, topic: str, event: EventModel) -> None:
        """Send a platform event to one of DESIGN.md's topics, keyed as the topic says."""
        spec = topic_spec(topic)
        record = event.to_avro()
        self.send_record(topic, event.SCHEMA, record, spec.key_of(record))

    def send_raw(self, record: Mapping[str, Any]) -> None:
        """Send an application event of the configured domain to ``events.raw``."""
        key = str(record[self.domain.entity_key])
        self.send_record("events.raw", self.domain.name, record, key)

    def send_record(self, topic: str, schema: str, record: Mapping[str, Any], key: str) -> None:
        value = self.codec.encode(schema, record)
        self.send_bytes(topic, value, key.encode())

    def send_bytes(self, topic: str, value: bytes, key: bytes | None) -> None:
        """Send one record; :class:`RecordRefused` if the producer refuses that record (its
        size, say), which leaves the bus usable for the next."""
        name = self.settings.topic(topic)
        while True:
            try:
                self._producer.produce(name, value, key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)  # the local queue is full: let deliveries drain
            except KafkaException as error:
                problem = error.args[0]
                if isinstance(problem, KafkaError) and refuses_the_record(problem):
                    if problem.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                        raise RecordTooLarge(
                            f"a record of {len(value)} bytes for {name} is over the Kafka "
                            f"producer's limit (message.max.bytes, {DEFAULT_MESSAGE_MAX_BYTES} "
                            "by default): send smaller records"
                        ) from None
                    raise RecordRefused(
                        f"{name} refused a record of {len(value)} bytes: {problem.str()}"
                    ) from None
                raise BrokerUnavailable(f"producing to {name}: {error}") from None
        self._producer.poll(0)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every send to be acknowledged, or fail naming the broker."""
        wait = self.settings.kafka_timeout_s * 3 if timeout_s is None else timeout_s
        left = self._producer.flush(wait)
        if left:
            raise BrokerUnavailable(
                f"{left} record(s) not acknowledged by {self.settings.bootstrap_servers} "
                f"within {wait:.0f} s"
            )
        if self._errors:
            errors, self._errors = self._errors, []
            raise BrokerUnavailable(f"{len(errors)} record(s) failed: {errors[:3]}")


@dataclass(frozen=True)
class ReceivedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


def read_topic(
    settings: HeadwaterSettings,
    topic: str,
    *,
    group: str,
    from_beginning: bool = True,
    max_records: int | None = None,
    idle_timeout_s: float = 5.0,
    commit: bool = False,
) -> Iterator[ReceivedRecord]:
    """Records of a topic until ``max_records`` were read or none came for ``idle_timeout_s``."""
    consumer = make_consumer(
        settings, group, **{"auto.offset.reset": "earliest" if from_beginning else "latest"}
    )
    consumer.subscribe([settings.topic(topic)])
    count = 0
    try:
        while max_records is None or count < max_records:
            message = consumer.poll(idle_timeout_s)
            if message is None:
                return
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise BrokerUnavailable(f"reading {topic}: {error.str()}")
            count += 1
            yield ReceivedRecord(
                message.topic() or topic,
                message.partition() or 0,
                message.offset() or 0,
                message.key(),
                message.value() or b"",
                message.timestamp()[1],
            )
            if commit:
                consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()
