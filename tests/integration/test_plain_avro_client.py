"""A client that knows only the Avro specification and ``schemas/avro/*.avsc`` reads and writes
every topic of the platform on the real broker, and the platform reads what it wrote."""

from __future__ import annotations

import ast
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus, make_codec, read_topic
from headwater.infra.kafka_clients import ensure_topics
from headwater.loop.agent_runner import AgentRunner
from headwater.loop.drift_monitor import FeatureReference
from headwater.loop.loop_handler import LoopConfig, LoopHandler, References
from headwater.schemas.domain import load_domain
from headwater.schemas.models import ALL_MODELS, Label, Metric, ModelVersion, Prediction
from headwater.schemas.topics import TOPICS
from headwater.streams.validation import EventValidator
from tests.integration import plain_avro
from tests.integration.plain_avro import PlainSchemas
from tests.unit.test_schemas import SAMPLES

pytestmark = pytest.mark.integration

AVRO_DIR = Path(__file__).resolve().parents[2] / "schemas" / "avro"
TRANSACTION = "dev.headwater.demo.Transaction"


def test_the_plain_client_imports_nothing_of_headwater() -> None:
    tree = ast.parse(Path(plain_avro.__file__).read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m.split(".")[0] in ("headwater", "tests")}


def _samples() -> dict[str, tuple[str, dict[str, Any]]]:
    """Per topic: the schema and a record of it."""
    samples = {}
    for spec in TOPICS.values():
        if spec.model is None:
            samples[spec.name] = (TRANSACTION, _transaction(SAMPLES["Transaction"]))
        else:
            record = spec.model.model_validate(SAMPLES[spec.model.__name__]).to_avro()
            samples[spec.name] = (spec.model.SCHEMA, record)
    return samples


def _transaction(record: dict[str, Any]) -> dict[str, Any]:
    by_schema = {m.SCHEMA: m for m in ALL_MODELS}
    return by_schema[TRANSACTION].model_validate(record).to_avro()


def _own(kafka: HeadwaterSettings, unique: str) -> HeadwaterSettings:
    settings = kafka.model_copy(update={"topic_prefix": f"plain-{unique}-"})
    ensure_topics(settings)
    return settings


def test_the_platform_reads_what_a_plain_client_writes_on_every_topic(
    kafka: HeadwaterSettings, unique: str
) -> None:
    settings = _own(kafka, unique)
    plain = PlainSchemas(AVRO_DIR.glob("*.avsc"))
    samples = _samples()
    plain_avro.produce(
        settings.bootstrap_servers,
        [(settings.topic(t), b"k", plain.encode(s, r)) for t, (s, r) in samples.items()],
    )
    codec = make_codec(settings)
    for topic, (schema, record) in samples.items():
        found = [
            codec.decode(r.value)
            for r in read_topic(settings, topic, group=f"read-{topic}-{unique}", max_records=1)
        ]
        assert found == [(schema, record)], topic
        if TOPICS[topic].model is not None:
            TOPICS[topic].model.from_avro(record)  # type: ignore[union-attr]
    # events.raw goes through the feature worker's validation: typed, nothing dead-lettered
    validator = EventValidator(load_domain(codec.catalog, ""), codec)
    raw = plain.encode(TRANSACTION, samples["events.raw"][1])
    validated = validator.validate(raw, 0, 0)
    assert isinstance(validated, dict) and validated["entity_id"] == "c1", validated


def test_a_plain_client_reads_what_the_platform_writes_on_every_topic(
    kafka: HeadwaterSettings, unique: str
) -> None:
    settings = _own(kafka, unique)
    bus = EventBus(settings)
    samples = _samples()
    for topic, (schema, record) in samples.items():
        if topic == "events.raw":
            bus.send_raw(record)
        else:
            bus.send_record(topic, schema, record, "k")
    bus.flush()
    plain = PlainSchemas(AVRO_DIR.glob("*.avsc"))
    records = plain_avro.consume(
        settings.bootstrap_servers,
        [settings.topic(t) for t in samples],
        f"plain-{unique}",
        until=lambda found: len(found) >= len(samples),
    )
    decoded = {topic[len(settings.topic_prefix) :]: plain.decode(value) for topic, value in records}
    assert decoded == samples


def _references(model: str, version: int, sha256: str) -> References | None:
    rng = np.random.default_rng(0)
    return {"amount": FeatureReference.from_sample("amount", rng.normal(50, 10, 5000))}


def test_labels_a_plain_client_sends_are_joined_not_dead_lettered(
    kafka: HeadwaterSettings, unique: str
) -> None:
    settings = _own(kafka, unique)
    plain = PlainSchemas(AVRO_DIR.glob("*.avsc"))
    runner = AgentRunner(
        settings, LoopHandler(_references, LoopConfig(metrics_every=50)), f"loop-{unique}"
    ).start()
    now = int(time.time() * 1000)
    version = ModelVersion(
        model="fraud", version=1, action="registered", artifact_sha256="c" * 64, event_time_ms=now
    )
    messages = [
        (
            settings.topic("model-versions"),
            b"fraud@1",
            plain.encode(version.SCHEMA, version.to_avro()),
        )
    ]
    for i in range(200):
        label = float(i % 3 == 0)
        prediction = Prediction(
            request_id=f"r{i}",
            entity_id=f"c{i % 7}",
            model="fraud",
            version=1,
            route="champion",
            output=0.8 if label else 0.2,
            features={"amount": 50.0},
            event_time_ms=now + i,
            served_at_ms=now + i,
            latency_ms=1.0,
        )
        outcome = Label(
            request_id=f"r{i}",
            entity_id=f"c{i % 7}",
            label=label,
            event_time_ms=now + i,
            labeled_at_ms=now + i + 10,
        )
        messages.append(
            (
                settings.topic("predictions"),
                b"r",
                plain.encode(Prediction.SCHEMA, prediction.to_avro()),
            )
        )
        messages.append(
            (settings.topic("labels"), b"r", plain.encode(Label.SCHEMA, outcome.to_avro()))
        )
    plain_avro.produce(settings.bootstrap_servers, messages)
    deadline = time.monotonic() + 120
    # the loop also reads back the version it promotes on model-versions: one record more
    while time.monotonic() < deadline and runner.stats.consumed < len(messages) + 1:
        time.sleep(0.2)
    runner.stop()
    assert runner.stats.consumed >= len(messages)
    assert runner.stats.deadlettered == 0
    codec = make_codec(settings)
    metrics = [
        Metric.from_avro(codec.decode(r.value)[1])
        for r in read_topic(settings, "metrics", group=f"m-{unique}", idle_timeout_s=3.0)
    ]
    # every label joined its prediction: the live accuracy of a perfect model is 1
    assert any(m.metric == "accuracy" and m.value == 1.0 for m in metrics), metrics
