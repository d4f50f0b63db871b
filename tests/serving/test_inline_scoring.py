"""The feature worker that scores (what ``headwater up`` runs), on a user's own domain with a
real broker and a real trained model: one answer per event, features and predictions from the
same batch, and the standalone scorer answering only what the worker did not."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus, make_codec
from headwater.infra.kafka_clients import ensure_topics, make_consumer
from headwater.schemas.models import FeatureVector, Prediction
from headwater.schemas.topics import SCORED_BY_HEADER
from headwater.serving.kafka_scorer import KafkaScorer
from headwater.serving.routing import publish_routing, routing_event
from headwater.serving.runtime import start_runtime
from tests.serving.modelkit import register_versions
from tests.streams.byo.ride_features import FEATURE_SET
from tests.streams.workers import end_offsets, start_worker, stop_worker, wait_until

pytestmark = pytest.mark.integration

BYO = Path(__file__).resolve().parents[1] / "streams" / "byo"


def rides(tag: str, count: int, start_ms: int) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "ride_id": f"{tag}-{i}",
                "rider_id": f"rider-{i % 7}",
                "ended_at_ms": start_ms + i * 60_000,
                "fare_eur": 5.0 + i % 40,
                "minutes": 5 + i % 50,
                "city": ("Paris", "Lyon", "Nice")[i % 3],
            }
        )
        for i in range(count)
    ]


def send_rides(settings: HeadwaterSettings, payloads: list[bytes]) -> None:
    bus = EventBus(settings)
    for i, payload in enumerate(payloads):
        bus.send_bytes("events.raw", payload, f"rider-{i % 7}".encode())
    bus.flush()


def read_all(
    settings: HeadwaterSettings, topic: str, unique: str
) -> list[tuple[bytes, dict[str, str | bytes | None]]]:
    """Every record of ``topic`` so far: its value and its headers."""
    consumer = make_consumer(settings, f"read-{unique}-{time.time_ns()}")
    consumer.subscribe([settings.topic(topic)])
    found: list[tuple[bytes, dict[str, str | bytes | None]]] = []
    try:
        while (message := consumer.poll(3.0)) is not None:
            if message.error() is None:
                headers = dict(message.headers() or {})  # a consumer's come as a list of pairs
                found.append((message.value() or b"", headers))
    finally:
        consumer.close()
    return found


def predictions(settings: HeadwaterSettings, unique: str) -> list[Prediction]:
    codec = make_codec(settings)
    records = read_all(settings, "predictions", unique)
    return [Prediction.from_avro(codec.decode(value)[1]) for value, _ in records]


def test_the_worker_scores_its_batches_and_the_scorer_answers_the_rest(
    kafka: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    model = f"rides-{unique}"
    settings = kafka.model_copy(
        update={
            "topic_prefix": f"inline-{unique}-",
            "event_schema_file": str(BYO / "rides.avsc"),
            "features": "tests.streams.byo.ride_features",
            "serving_model": model,
        }
    )
    ensure_topics(settings)
    names = tuple(FEATURE_SET.names)
    _, bundles = register_versions(settings, model, unique, 1, features=names)
    start_ms = 1_700_000_000_000

    # Before the model has a routing the worker scores nothing: these features go out
    # unmarked, for the standalone scorer.
    send_rides(settings, rides(f"{unique}-early", 30, start_ms))
    log = tmp_path / "worker.log"
    worker = start_worker(
        settings, "headwater.serving.inline_worker", log, HEADWATER_SERVING_MODEL=model
    )
    try:
        wait_until(lambda: end_offsets(settings, "features") >= 30, 90, "early features", log)
        assert end_offsets(settings, "predictions") == 0
        publish_routing(EventBus(settings), routing_event(model, {1: 1.0}, reason="test"))
        time.sleep(5)  # the worker's routing follower catches up
        late = rides(f"{unique}-late", 80, start_ms + 3_600_000)
        late.append(b'{"ride_id": "broken"')  # one bad record: a dead letter, nothing else
        send_rides(settings, late)
        wait_until(lambda: end_offsets(settings, "predictions") >= 80, 90, "predictions", log)
    finally:
        stop_worker(worker)
    text = log.read_text()
    counters = re.findall(r"feature worker stopped: WorkerCounters\((.*?)\)", text)
    assert counters, text[-3000:]
    counts = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", counters[-1])}
    assert counts["consumed"] == 111
    assert counts["valid"] == 110 and counts["rejected"] == 1
    assert counts["predicted"] == 80 and counts["unscored"] == 30 and counts["unreadable"] == 0
    assert counts["valid"] == counts["predicted"] + counts["unreadable"] + counts["unscored"]

    codec = make_codec(settings)
    features = read_all(settings, "features", unique)
    marked = {
        FeatureVector.from_avro(codec.decode(value)[1]).event_id: headers.get(SCORED_BY_HEADER)
        for value, headers in features
    }
    assert len(marked) == len(features) == 110  # the features as they were, one per event
    assert {i for i, by in marked.items() if by == model.encode()} == {
        f"{unique}-late-{i}" for i in range(80)
    }
    assert {i for i, by in marked.items() if by is None} == {
        f"{unique}-early-{i}" for i in range(30)
    }

    inline = predictions(settings, unique)
    assert sorted(p.request_id for p in inline) == sorted(f"{unique}-late-{i}" for i in range(80))
    vectors = {
        v.event_id: v
        for v in (FeatureVector.from_avro(codec.decode(value)[1]) for value, _ in features)
    }
    for p in inline:
        vector = vectors[p.request_id]
        row = np.array([[vector.values[n] for n in names]])
        assert p.output == pytest.approx(float(bundles[1].predict(row)[0]), rel=1e-5)
        assert p.version == 1 and not p.fallback and p.entity_id == vector.entity_id
        assert p.feature_set == FEATURE_SET.name

    # The standalone scorer answers the 30 unmarked vectors and skips the 80 the worker scored.
    runtime = start_runtime(settings, model)
    scorer = KafkaScorer(runtime, group=f"scorer-{unique}")
    stop = threading.Event()
    thread = threading.Thread(target=scorer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: end_offsets(settings, "predictions") >= 110, 60, "scorer answers", log)
        time.sleep(2)  # anything more it would have sent
    finally:
        stop.set()
        thread.join(30)
        runtime.stop()
    assert scorer.counts.scored_inline == 80
    every = predictions(settings, unique)
    ids = [p.request_id for p in every]
    assert len(ids) == len(set(ids)) == 110  # exactly one answer per event
    assert set(ids) == set(vectors)
