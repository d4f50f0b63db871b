"""Kafka clients made from the settings, the topic bootstrap, and what ``status`` reports.

Every client gets the same connection settings (local broker or external cluster with SASL/TLS),
and every call that waits on the broker has a timeout whose error names the address.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ClusterMetadata,
    NewTopic,
)

from headwater.core.errors import BrokerUnavailable
from headwater.core.settings import HeadwaterSettings
from headwater.schemas.topics import TOPICS


def admin_client(settings: HeadwaterSettings) -> AdminClient:
    config: dict[str, str | int | float | bool] = dict(settings.librdkafka_config())
    return AdminClient(config)


# Produce errors about one record (its size or content), not the broker or the topic: the record
# goes to `deadletter`, and the process carries on.
_RECORD_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.POLICY_VIOLATION,
        KafkaError._INVALID_ARG,
        KafkaError._BAD_MSG,
    }
)


def refuses_the_record(error: KafkaError) -> bool:
    """Whether a produce error is about the record itself (see :data:`_RECORD_ERRORS`).

    >>> refuses_the_record(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    True
    >>> refuses_the_record(KafkaError(KafkaError._TRANSPORT))
    False
    """
    return error.code() in _RECORD_ERRORS


# Consumer errors that no retry mends: the topic is gone, or the client may not read it.
_PERMANENT_CONSUMER_ERRORS = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
    }
)


def consumer_error_is_fatal(error: KafkaError) -> bool:
    """Whether a consumer's error ends its process. librdkafka recovers from the others by
    itself (a broker restarting, a leader moving, a coordinator loading): a consumer loop logs
    them and goes on polling.

    >>> consumer_error_is_fatal(KafkaError(KafkaError._TRANSPORT))
    False
    >>> consumer_error_is_fatal(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    True
    """
    return bool(error.fatal()) or error.code() in _PERMANENT_CONSUMER_ERRORS


def make_producer(settings: HeadwaterSettings, **overrides: Any) -> Producer:
    """An idempotent producer: a retried send never writes a record twice."""
    config: dict[str, Any] = {
        **settings.librdkafka_config(),
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": int(settings.kafka_timeout_s * 3000),
    }
    config.update(overrides)
    return Producer(config)


def make_consumer(settings: HeadwaterSettings, group: str, **overrides: Any) -> Consumer:
    """A consumer that commits only when told to (after its output is safely produced)."""
    config: dict[str, Any] = {
        **settings.librdkafka_config(),
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "session.timeout.ms": 10000,
    }
    config.update(overrides)
    return Consumer(config)


def cluster_metadata(
    settings: HeadwaterSettings, timeout_s: float | None = None
) -> ClusterMetadata:
    """The broker's metadata, or a :class:`BrokerUnavailable` naming the address."""
    wait = settings.kafka_timeout_s if timeout_s is None else timeout_s
    try:
        admin = admin_client(settings)
        return admin.list_topics(timeout=wait)
    except KafkaException as error:
        raise BrokerUnavailable(
            f"Kafka broker at {settings.bootstrap_servers} did not answer within {wait:.0f} s "
            f"({error.args[0].str() if error.args else error}); is it running? "
            "(`headwater up` starts the local one)"
        ) from None


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    end_offsets: dict[int, int]

    @property
    def records(self) -> int:
        """Sum of the partitions' end offsets (records ever written, before compaction)."""
        return sum(self.end_offsets.values())


def ensure_topics(settings: HeadwaterSettings) -> list[str]:
    """Create every topic of DESIGN.md that doesn't exist yet; returns the ones created."""
    wanted = []
    for spec in TOPICS.values():
        config = {"retention.ms": str(settings.topic_retention_ms)}
        if spec.compacted:
            config = COMPACTED
        name = settings.topic(spec.name)
        wanted.append(new_topic(settings, name, settings.topic_partitions, config))
    return create_topics(settings, wanted)


COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
"""The configuration of a compacted topic: the latest record per key is kept forever."""


def new_topic(
    settings: HeadwaterSettings, name: str, partitions: int, config: dict[str, str]
) -> NewTopic:
    """A topic to create with the configured replication."""
    return NewTopic(
        name,
        num_partitions=partitions,
        replication_factor=settings.topic_replication,
        config=config,
    )


def create_topics(settings: HeadwaterSettings, topics: list[NewTopic]) -> list[str]:
    """Create those of ``topics`` that don't exist yet and wait for their partition leaders;
    returns the names created."""
    existing = set(cluster_metadata(settings).topics)
    wanted = [t for t in topics if t.topic not in existing]
    if not wanted:
        return []
    created = []
    admin = admin_client(settings)  # must outlive the futures
    futures = admin.create_topics(wanted, request_timeout=settings.kafka_timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=settings.kafka_timeout_s)
            created.append(name)
        except KafkaException as error:
            if error.args and error.args[0].name() == "TOPIC_ALREADY_EXISTS":
                continue
            raise BrokerUnavailable(f"creating topic {name} failed: {error}") from None
    _wait_for_leaders(settings, created)
    return created


def _wait_for_leaders(settings: HeadwaterSettings, names: list[str]) -> None:
    """New topics are usable once every partition has a leader; wait for that."""
    deadline = time.monotonic() + settings.kafka_timeout_s * 3
    while names and time.monotonic() < deadline:
        topics = cluster_metadata(settings).topics
        if all(
            name in topics
            and topics[name].partitions
            and all(p.leader >= 0 for p in topics[name].partitions.values())
            for name in names
        ):
            # The metadata cache can lead the partition state by a moment; offsets confirm it.
            consumer = make_consumer(settings, "headwater-bootstrap")
            try:
                for name in names:
                    for partition in topics[name].partitions:
                        consumer.get_watermark_offsets(TopicPartition(name, partition), 5.0)
                return
            except KafkaException:
                pass
            finally:
                consumer.close()
        time.sleep(0.2)
    if names:
        raise BrokerUnavailable(
            f"topics {names} got no partition leaders from {settings.bootstrap_servers} in time"
        )


def topic_states(settings: HeadwaterSettings, names: Iterable[str]) -> list[TopicState]:
    """Partitions and end offsets of each named topic that exists."""
    metadata = cluster_metadata(settings)
    consumer = make_consumer(settings, "headwater-status")
    try:
        states = []
        for name in names:
            topic = metadata.topics.get(name)
            if topic is None:
                continue
            ends = {}
            for partition in sorted(topic.partitions):
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(name, partition), timeout=settings.kafka_timeout_s
                )
                ends[partition] = high
            states.append(TopicState(name, len(topic.partitions), ends))
        return states
    finally:
        consumer.close()
