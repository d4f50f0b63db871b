"""Consumer lag sampled from the real local broker and kept in the real warehouse."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition

from headwater.core.settings import HeadwaterSettings
from headwater.infra.consumer_lag import record_lag, sample_lag
from headwater.infra.kafka_clients import ensure_topics, make_consumer, make_producer
from headwater.infra.warehouse import ChdbWarehouse

pytestmark = pytest.mark.integration


def test_lag_is_end_offset_minus_committed(
    kafka: HeadwaterSettings, warehouse: ChdbWarehouse, unique: str
) -> None:
    settings = kafka.model_copy(update={"topic_prefix": f"lag-{unique}-"})
    ensure_topics(settings)
    topic = settings.topic("events")
    producer = make_producer(settings)
    for _ in range(10):
        producer.produce(topic, value=b"x", key=b"k", partition=0)
    producer.flush(10)
    group = f"lag-test-{unique}"
    consumer = make_consumer(settings, group)
    try:
        # Commit offset 4 on partition 0: six records stay unread.
        consumer.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
    finally:
        consumer.close()

    samples = sample_lag(settings, [group])

    assert [(s.topic, s.partition, s.end_offset, s.lag) for s in samples] == [(topic, 0, 10, 6)]
    assert record_lag(warehouse, samples) == 1
    rows = warehouse.query(
        f"SELECT lag FROM {warehouse.database}.v_consumer_lag WHERE group_id = '{group}'"
    ).rows
    assert rows == [[6]]
