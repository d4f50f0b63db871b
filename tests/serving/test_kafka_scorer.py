"""The Kafka-native scorer on the real broker with real trained torch models."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus, make_codec, read_topic
from headwater.schemas.models import FeatureVector, Prediction
from headwater.serving.kafka_scorer import KafkaScorer
from headwater.serving.routing import publish_routing, routing_event
from headwater.serving.runtime import start_runtime
from tests.serving.modelkit import FEATURES, feature_vectors, register_versions, send_all

pytestmark = pytest.mark.integration


def read_predictions(settings: HeadwaterSettings, want: int, unique: str) -> list[Prediction]:
    codec = make_codec(settings)
    found: list[Prediction] = []
    deadline = time.monotonic() + 60
    while len(found) < want and time.monotonic() < deadline:
        records = read_topic(
            settings, "predictions", group=f"read-{unique}-{time.time_ns()}", idle_timeout_s=1.5
        )
        found = [Prediction.from_avro(codec.decode(r.value)[1]) for r in records]
    return found


def test_features_become_routed_predictions_with_shadows_and_live_changes(
    topics: HeadwaterSettings, unique: str
) -> None:
    model = f"fraud-{unique}"
    _, bundles = register_versions(topics, model, unique, 3)
    bus = EventBus(topics)
    publish_routing(bus, routing_event(model, {1: 0.5, 2: 0.5}, shadows=[3]))
    runtime = start_runtime(topics, model)
    scorer = KafkaScorer(runtime, group=f"scorer-{unique}")
    stop = threading.Event()
    thread = threading.Thread(target=scorer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert {m.version for m in runtime.loader.cached()} == {1, 2, 3}  # warmed up front
        vectors = feature_vectors(unique, 200)
        send_all(topics, "features", vectors)
        found = read_predictions(topics, 400, unique)
        answers = [p for p in found if p.route != "shadow"]
        shadows = [p for p in found if p.route == "shadow"]
        assert len(answers) == 200 and len(shadows) == 200
        assert {p.version for p in shadows} == {3}
        assert {p.version for p in answers} == {1, 2}
        by_entity: dict[str, set[int]] = {}
        for p in answers:
            by_entity.setdefault(p.entity_id, set()).add(p.version)
        assert all(len(versions) == 1 for versions in by_entity.values())  # sticky
        sent = {v.event_id: v for v in vectors}
        for p in answers:
            vector = sent[p.request_id]
            assert p.features == {n: vector.values[n] for n in FEATURES}
            expected = bundles[p.version].predict(np.array([[vector.values[n] for n in FEATURES]]))
            assert p.output == pytest.approx(float(expected[0]), rel=1e-5)
            assert not p.fallback and p.source == "kafka" and p.feature_set == "fraud"

        publish_routing(bus, routing_event(model, {2: 1.0}))
        assert runtime.routing.wait_for(model, lambda r: r.weights == {"2": 1.0}, 30)
        send_all(topics, "features", feature_vectors(f"{unique}-b", 50))
        later = [
            p
            for p in read_predictions(topics, 450, unique)
            if p.request_id.startswith(f"ev-{unique}-b-")
        ]
        assert len(later) == 50 and {p.version for p in later} == {2}
    finally:
        stop.set()
        thread.join(30)
        runtime.stop()


def test_unreadable_vectors_are_dead_lettered_and_counts_add_up(
    topics: HeadwaterSettings, unique: str
) -> None:
    model = f"fraud-{unique}"
    register_versions(topics, model, unique, 1)
    bus = EventBus(topics)
    publish_routing(bus, routing_event(model, {1: 1.0}))
    good = feature_vectors(unique, 20)
    missing = FeatureVector(
        entity_id="card-x",
        feature_set="fraud",
        feature_set_version=1,
        event_id=f"missing-{unique}",
        event_time_ms=1,
        computed_at_ms=1,
        values={"amount": 1.0},
    )
    send_all(topics, "features", [*good, missing])
    bus.send_bytes("features", b"\x00garbage", b"card-y")
    bus.flush()
    runtime = start_runtime(topics, model)
    scorer = KafkaScorer(runtime, group=f"scorer-{unique}")
    try:
        deadline = time.monotonic() + 60
        while scorer.counts.consumed < 22 and time.monotonic() < deadline:
            scorer.step()
        assert scorer.counts.consumed == 22
        assert (scorer.counts.predicted, scorer.counts.dead_lettered) == (20, 2)
        codec = make_codec(topics)
        letters = [
            codec.decode(r.value)[1]
            for r in read_topic(topics, "deadletter", group=f"dl-{unique}", idle_timeout_s=3)
        ]
        reasons = {letter["reason_code"]: letter["reason"] for letter in letters}
        assert "velocity" in reasons["features_unreadable"]
        assert "FeatureVector" in reasons["undecodable"]
    finally:
        runtime.stop()


def test_scorer_idles_without_a_routing_then_scores_what_queued(
    topics: HeadwaterSettings, unique: str
) -> None:
    model = f"fraud-{unique}"
    register_versions(topics, model, unique, 1)
    send_all(topics, "features", feature_vectors(unique, 30))
    runtime = start_runtime(topics, model)
    scorer = KafkaScorer(runtime, group=f"scorer-{unique}")
    try:
        for _ in range(20):  # no routing: nothing to serve, nothing consumed, no error
            assert scorer.step() == 0
        assert scorer.counts.consumed == 0
        assert model in scorer.waiting_reason() and "headwater models route" in (
            scorer.waiting_reason()
        )
        publish_routing(EventBus(topics), routing_event(model, {1: 1.0}))
        assert runtime.routing.wait_for(model, lambda r: r.weights == {"1": 1.0}, 30)
        deadline = time.monotonic() + 60
        while scorer.counts.predicted < 30 and time.monotonic() < deadline:
            scorer.step()
        scorer.drain()
        found = read_predictions(topics, 30, unique)
        assert len(found) == 30 and {(p.version, p.fallback) for p in found} == {(1, False)}
    finally:
        runtime.stop()


def test_a_prediction_the_broker_refuses_is_dead_lettered_and_scoring_goes_on(
    topics: HeadwaterSettings, unique: str
) -> None:
    """A vector whose prediction would be over the producer's 1 MB limit (an event id of about
    1 MB, which fits on `features`) is dead-lettered as PRODUCE_REFUSED; the rest are scored."""
    model = f"fraud-{unique}"
    register_versions(topics, model, unique, 1)
    bus = EventBus(topics, **{"message.max.bytes": 1_048_000})
    publish_routing(bus, routing_event(model, {1: 1.0}))
    huge = feature_vectors(unique, 1)[0].model_copy(update={"event_id": "e" * 1_000_100})
    vectors = [*feature_vectors(unique, 5), huge, *feature_vectors(f"{unique}-b", 5)]
    for vector in vectors:
        bus.send("features", vector)
    bus.flush()
    runtime = start_runtime(topics, model)
    scorer = KafkaScorer(runtime, group=f"scorer-{unique}")
    try:
        deadline = time.monotonic() + 60
        while scorer.counts.consumed < len(vectors) and time.monotonic() < deadline:
            scorer.step()
        scorer.drain()
        assert (scorer.counts.predicted, scorer.counts.dead_lettered) == (10, 1)
        codec = make_codec(topics)
        letters = [
            codec.decode(r.value)[1]
            for r in read_topic(topics, "deadletter", group=f"dl-{unique}", idle_timeout_s=3)
        ]
        assert [d["reason_code"] for d in letters] == ["PRODUCE_REFUSED"]
        assert letters[0]["original_size"] > 1_000_000
        assert len(read_predictions(topics, 10, unique)) == 10
    finally:
        runtime.stop()
