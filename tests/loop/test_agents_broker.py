"""The loop agent on the real local Apache Kafka: events in, decisions and metrics out, offsets
committed after the outputs, malformed records to the dead-letter topic."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pytest
from confluent_kafka import TopicPartition

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus, read_topic
from headwater.infra.kafka_clients import ensure_topics, make_consumer
from headwater.loop.agent_runner import AgentRunner
from headwater.loop.drift_monitor import FeatureReference
from headwater.loop.loop_handler import LoopConfig, LoopHandler, References
from headwater.schemas.models import (
    DeadLetter,
    DriftAlarm,
    EventModel,
    Label,
    Metric,
    ModelVersion,
    Prediction,
    Routing,
)
from headwater.schemas.topics import topic_spec

pytestmark = pytest.mark.integration


def _references(model: str, version: int, sha256: str) -> References | None:
    rng = np.random.default_rng(0)
    return {"amount": FeatureReference.from_sample("amount", rng.normal(50, 10, 5000))}


def _wait(check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


M = TypeVar("M", bound=EventModel)


def _read(settings: HeadwaterSettings, topic: str, model: type[M], unique: str) -> list[M]:
    assert topic_spec(topic).model is model
    codec = EventBus(settings).codec
    records = read_topic(settings, topic, group=f"check-{topic}-{unique}", idle_timeout_s=2.0)
    return [model.from_avro(codec.decode(r.value)[1]) for r in records]


def test_loop_agent_on_the_broker(kafka: HeadwaterSettings, unique: str) -> None:
    settings = kafka.model_copy(update={"topic_prefix": f"loop-{unique}-"})
    ensure_topics(settings)
    handler = LoopHandler(_references, LoopConfig(drift_window=200, metrics_every=50))
    runner = AgentRunner(settings, handler, f"loop-{unique}", batch_size=200).start()
    bus = EventBus(settings)
    now = int(time.time() * 1000)
    bus.send(
        "model-versions",
        ModelVersion(
            model="fraud",
            version=1,
            action="registered",
            artifact_sha256="c" * 64,
            event_time_ms=now,
        ),
    )
    rng = np.random.default_rng(1)
    for i in range(600):
        label = float(rng.random() < 0.3)
        shifted = i >= 400
        bus.send(
            "predictions",
            Prediction(
                request_id=f"r{i}",
                entity_id=f"c{i % 7}",
                model="fraud",
                version=1,
                route="champion",
                output=float(np.clip(label * 0.6 + 0.2, 0, 1)),
                features={"amount": float(rng.normal(80 if shifted else 50, 10))},
                event_time_ms=now + i,
                served_at_ms=now + i,
                latency_ms=1.0,
            ),
        )
        bus.send(
            "labels",
            Label(
                request_id=f"r{i}",
                entity_id=f"c{i % 7}",
                label=label,
                event_time_ms=now + i,
                labeled_at_ms=now + i + 10,
            ),
        )
    bus.send_bytes("labels", b"not avro at all", b"r-bad")
    bus.flush()
    _wait(lambda: runner.stats.consumed >= 1202)
    runner.stop()
    assert runner.stats.deadlettered == 1
    routing = _read(settings, "routing", Routing, unique)
    assert [r.weights for r in routing] == [{"1": 1.0}]
    versions = _read(settings, "model-versions", ModelVersion, unique)
    assert [v.action for v in versions] == ["registered", "promoted"]
    drift = _read(settings, "drift", DriftAlarm, unique)
    assert {a.feature for a in drift} == {"amount"}
    metrics = _read(settings, "metrics", Metric, unique)
    assert any(m.metric == "accuracy" and m.value == 1.0 for m in metrics)
    dead = _read(settings, "deadletter", DeadLetter, unique)
    assert [d.original_value for d in dead] == [b"not avro at all"]
    # every input offset is committed: a restarted agent would not see them again
    consumer = make_consumer(settings, f"loop-{unique}")
    try:
        parts = [TopicPartition(settings.topic("predictions"), p) for p in range(3)]
        committed = consumer.committed(parts, timeout=10)
        assert sum(max(tp.offset, 0) for tp in committed) == 600
    finally:
        consumer.close()
