"""The real local Apache Kafka broker: topics, every schema through it, consumer groups."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError

from headwater.core.errors import BrokerUnavailable
from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus, make_codec, read_topic
from headwater.infra.kafka_clients import admin_client, ensure_topics, make_consumer, topic_states
from headwater.schemas.models import ALL_MODELS, Label
from headwater.schemas.topics import TOPICS
from tests.unit.test_schemas import SAMPLES

pytestmark = pytest.mark.integration


def test_topic_bootstrap_is_idempotent(kafka: HeadwaterSettings) -> None:
    assert ensure_topics(kafka) == []
    states = {s.name: s for s in topic_states(kafka, TOPICS)}
    assert sorted(states) == sorted(TOPICS)
    assert all(s.partitions == kafka.topic_partitions for s in states.values())


def test_routing_is_compacted_and_others_retained(kafka: HeadwaterSettings) -> None:
    from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

    admin = admin_client(kafka)
    resources = [ConfigResource("topic", "routing"), ConfigResource("topic", "predictions")]
    configs = {r.name: f.result(10) for r, f in admin.describe_configs(resources).items()}
    assert configs["routing"]["cleanup.policy"].value == "compact"
    assert configs["predictions"]["cleanup.policy"].value == "delete"
    assert configs["predictions"]["retention.ms"].value == str(kafka.topic_retention_ms)


def test_every_schema_through_its_topic(kafka: HeadwaterSettings, unique: str) -> None:
    bus = EventBus(kafka)
    by_schema = {m.SCHEMA: m for m in ALL_MODELS}
    sent = {}
    for spec in TOPICS.values():
        if spec.model is None:
            record = dict(SAMPLES["Transaction"], event_id=f"raw-{unique}")
            bus.send_raw(record)
            transaction = by_schema["dev.headwater.demo.Transaction"]
            sent[spec.name] = transaction.model_validate(record).to_avro()
        else:
            event = spec.model.model_validate(SAMPLES[spec.model.__name__])
            bus.send(spec.name, event)
            sent[spec.name] = event.to_avro()
    bus.flush()
    codec = make_codec(kafka)
    consumer = make_consumer(kafka, f"all-{unique}")
    consumer.subscribe(list(sent))
    found: dict[str, list[dict[str, object]]] = {topic: [] for topic in sent}
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and any(
            expected not in found[topic] for topic, expected in sent.items()
        ):
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            found[message.topic() or ""].append(codec.decode(message.value() or b"")[1])
    finally:
        consumer.close()
    for topic, expected in sent.items():
        assert expected in found[topic], topic


def test_consumer_group_resumes_from_committed_offsets(
    kafka: HeadwaterSettings, unique: str
) -> None:
    kafka = kafka.model_copy(update={"topic_prefix": f"resume-{unique}-"})
    ensure_topics(kafka)
    bus = EventBus(kafka)
    for i in range(10):
        bus.send(
            "labels", Label(entity_id=f"e{i}", label=float(i), event_time_ms=i, labeled_at_ms=i)
        )
    bus.flush()
    group = f"g-{unique}"
    first = list(read_topic(kafka, "labels", group=group, max_records=4, commit=True))
    assert len(first) == 4
    rest = list(read_topic(kafka, "labels", group=group, idle_timeout_s=3, commit=True))
    codec = make_codec(kafka)
    seen = [codec.decode(r.value)[1]["entity_id"] for r in first + rest]
    assert sorted(seen) == sorted(f"e{i}" for i in range(10))  # none lost, none repeated


def test_unreachable_broker_fails_fast_naming_the_address() -> None:
    settings = HeadwaterSettings(kafka_bootstrap="127.0.0.1:1", kafka_timeout_s=3)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1:1"):
        topic_states(settings, ["events"])
    assert time.monotonic() - started < 10


def test_consumer_reports_unknown_topic(kafka: HeadwaterSettings, unique: str) -> None:
    consumer = make_consumer(kafka, f"x-{unique}", **{"allow.auto.create.topics": False})
    consumer.subscribe([f"no-such-topic-{unique}"])
    try:
        message = consumer.poll(5)
        assert message is not None
        error = message.error()
        assert error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        consumer.close()
