"""headwater.Client on the real broker: events and labels in, a model's predictions out in a
consumer group, scoring over HTTP against a real server with trained models."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

import headwater
from headwater.core.errors import RecordTooLarge, SchemaError, ScoringUnavailable
from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus, make_codec, read_topic
from headwater.infra.kafka_clients import ensure_topics
from headwater.schemas.models import Prediction
from headwater.serving.http_app import create_app
from headwater.serving.http_server import HttpServer
from headwater.serving.routing import publish_routing, routing_event
from headwater.serving.runtime import start_runtime
from tests.serving.modelkit import register_versions
from tests.unit.test_schemas import SAMPLES

pytestmark = pytest.mark.integration
PORT = int(os.environ.get("HEADWATER_TEST_PORT_BASE", "29000")) + 183
VECTOR = {"amount": 0.7, "velocity": 1.2, "distance": -0.3}


@pytest.fixture
def own(kafka: HeadwaterSettings, unique: str) -> HeadwaterSettings:
    settings = kafka.model_copy(update={"topic_prefix": f"client-{unique}-"})
    ensure_topics(settings)
    return settings


def test_events_and_labels_arrive_checked(own: HeadwaterSettings, unique: str) -> None:
    with headwater.Client(own) as client:
        client.send_event(dict(SAMPLES["Transaction"], event_id=f"e-{unique}"))
        label = client.send_label("c1", 1.0, event_time_ms=5, request_id="r1")
        with pytest.raises(SchemaError, match="amount"):
            client.send_event(dict(SAMPLES["Transaction"], amount="lots"))
        with pytest.raises(RecordTooLarge, match=r"events\.raw"):
            client.send_event(dict(SAMPLES["Transaction"], country="x" * 2_000_000))
    codec = make_codec(own)
    raw = [codec.decode(r.value) for r in read_topic(own, "events.raw", group=f"r-{unique}")]
    assert [(name, record["event_id"]) for name, record in raw] == [
        ("dev.headwater.demo.Transaction", f"e-{unique}")
    ]
    labels = [codec.decode(r.value)[1] for r in read_topic(own, "labels", group=f"l-{unique}")]
    assert labels == [label.to_avro()]


def _prediction(model: str, i: int) -> Prediction:
    return Prediction.model_validate(
        dict(SAMPLES["Prediction"], model=model, request_id=f"{model}-{i}")
    )


def test_predictions_of_one_model_in_a_consumer_group(own: HeadwaterSettings, unique: str) -> None:
    bus = EventBus(own)
    for i in range(6):
        bus.send("predictions", _prediction("rides", i))
        bus.send("predictions", _prediction("other", i))
    bus.send_bytes("predictions", b"not avro", b"x")
    bus.flush()
    client = headwater.Client(own)
    group = f"app-{unique}"
    reader = client.predictions("rides", group=group, from_beginning=True, idle_timeout_s=5)
    first = [next(reader) for _ in range(4)]
    reader.close()  # the 4th was handed back but not asked past: it is read again
    rest = list(client.predictions("rides", group=group, from_beginning=True, idle_timeout_s=5))
    ids = sorted(p.request_id for p in first + rest)
    assert ids == sorted([f"rides-{i}" for i in range(6)] + [first[-1].request_id])
    assert all(isinstance(p, Prediction) and p.model == "rides" for p in first + rest)
    assert client.undecodable == 1
    # the group's offsets are committed: nothing is left to read
    assert list(client.predictions(group=group, idle_timeout_s=3)) == []


@pytest.fixture
def scoring(own: HeadwaterSettings, unique: str) -> Iterator[tuple[str, str]]:
    model = f"fraud-{unique}"
    register_versions(own, model, unique, 1)
    publish_routing(EventBus(own), routing_event(model, {1: 1.0}))
    runtime = start_runtime(own, model)
    server = HttpServer(create_app(runtime), "127.0.0.1", PORT).start()
    try:
        yield server.url, model
    finally:
        server.stop()
        runtime.stop()


def test_score_over_http(own: HeadwaterSettings, scoring: tuple[str, str]) -> None:
    url, model = scoring
    client = headwater.Client(own)
    score = client.score("card-1", VECTOR, request_id="req-1", url=url)
    assert (score.model, score.version, score.client_request_id) == (model, 1, "req-1")
    assert score.request_id.startswith("http:req-1:")  # the platform's own, for labels
    assert score.features == VECTOR and 0.0 <= score.output <= 1.0
    with pytest.raises(ScoringUnavailable, match="card-unknown"):
        client.score("card-unknown", url=url)  # no online features for it: refused, named
    deadline = time.monotonic() + 5
    with pytest.raises(ScoringUnavailable, match="did not answer"):
        client.score("card-1", VECTOR, url="http://127.0.0.1:9", timeout_s=2)
    assert time.monotonic() < deadline + 5
