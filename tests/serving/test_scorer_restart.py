"""Kill the Kafka scorer mid-stream and restart it: every input ends with exactly one
prediction row in the warehouse (commit after produce; idempotent rows by request id)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import Consumer

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus, make_codec
from headwater.infra.kafka_clients import make_consumer
from headwater.infra.warehouse import ChdbWarehouse
from headwater.schemas.models import Prediction
from headwater.serving.routing import publish_routing, routing_event
from tests.conftest import settings_env
from tests.serving.modelkit import feature_vectors, register_versions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COLUMNS = [*Prediction.model_fields, "_partition", "_offset"]


def sink_once(consumer: Consumer, settings: HeadwaterSettings, warehouse: ChdbWarehouse) -> int:
    """Insert one batch of prediction records into the warehouse table, then commit."""
    codec = make_codec(settings)
    messages = [m for m in consumer.consume(500, timeout=0.5) if m.error() is None]
    rows = []
    for message in messages:
        record = Prediction.from_avro(codec.decode(message.value() or b"")[1]).to_avro()
        rows.append([*record.values(), message.partition(), message.offset()])
    warehouse.insert("predictions", COLUMNS, rows)
    if messages:
        consumer.commit(asynchronous=False)
    return len(messages)


def start_scorer(settings: HeadwaterSettings, model: str, group: str) -> subprocess.Popen[bytes]:
    env = settings_env(settings) | {
        "HEADWATER_TOPIC_PREFIX": settings.topic_prefix,
        "HEADWATER_SERVING_BATCH_MAX": "8",
    }
    command = [
        sys.executable,
        "-m",
        "headwater.serving.kafka_scorer",
        "--model",
        model,
        "--group",
        group,
    ]
    return subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)


def test_kill_and_restart_leaves_exactly_one_row_per_input(
    topics: HeadwaterSettings, warehouse: ChdbWarehouse, unique: str
) -> None:
    model = f"fraud-{unique}"
    register_versions(topics, model, unique, 1)
    publish_routing(EventBus(topics), routing_event(model, {1: 1.0}))
    vectors = feature_vectors(unique, 1500)

    def produce() -> None:  # an open stream while the scorer dies and comes back
        bus = EventBus(topics)
        for start in range(0, len(vectors), 50):
            for vector in vectors[start : start + 50]:
                bus.send("features", vector)
            bus.flush()
            time.sleep(0.05)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    sink = make_consumer(topics, f"sink-{unique}")
    sink.subscribe([topics.topic("predictions")])
    group = f"scorer-{unique}"
    scorer = start_scorer(topics, model, group)
    try:
        seen, deadline = 0, time.monotonic() + 120
        while seen < 200 and time.monotonic() < deadline:
            seen += sink_once(sink, topics, warehouse)
        scorer.send_signal(signal.SIGKILL)
        scorer.wait(30)
        assert 0 < seen < len(vectors), "the kill must land mid-stream"
        scorer = start_scorer(topics, model, group)
        query = (
            f"SELECT count(), uniqExact(request_id) FROM {warehouse.database}.predictions "
            f"FINAL WHERE model = '{model}'"
        )
        rows, distinct = 0, 0
        deadline = time.monotonic() + 180
        while distinct < len(vectors) and time.monotonic() < deadline:
            sink_once(sink, topics, warehouse)
            rows, distinct = warehouse.query(query).rows[0]
        assert (rows, distinct) == (len(vectors), len(vectors))
        table = f"{warehouse.database}.predictions"
        found = warehouse.query(f"SELECT request_id FROM {table} FINAL WHERE model = '{model}'")
        ids = {r[0] for r in found.rows}
        assert ids == {v.event_id for v in vectors}
    finally:
        if scorer.poll() is None:
            os.kill(scorer.pid, signal.SIGTERM)
            scorer.wait(30)
        sink.close()
        producer.join(60)
