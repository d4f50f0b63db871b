"""HTTP scoring on uvicorn (loopback) with real trained models, the real broker and routing."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus, make_codec, read_topic
from headwater.infra.kafka_clients import ensure_topics
from headwater.schemas.models import Prediction
from headwater.serving.http_app import create_app
from headwater.serving.http_server import HttpServer
from headwater.serving.routing import publish_routing, routing_event
from headwater.serving.runtime import ServingRuntime, start_runtime
from headwater.trainers.model_family import ModelBundle
from tests.serving.modelkit import FEATURES, register_versions

pytestmark = pytest.mark.integration
PORT = int(os.environ.get("HEADWATER_TEST_PORT_BASE", "29000")) + 180
TOKEN = "s3cret-admin"
VECTOR = {"amount": 0.7, "velocity": 1.2, "distance": -0.3}


@dataclass(frozen=True)
class Online:
    values: Mapping[str, float]
    event_time_ms: int
    feature_set: str = "fraud"
    feature_set_version: int = 1


@dataclass
class Served:
    client: httpx.Client
    runtime: ServingRuntime
    bundles: dict[int, ModelBundle]
    model: str
    settings: HeadwaterSettings


@pytest.fixture(scope="module")
def served(kafka: HeadwaterSettings) -> Iterator[Served]:
    """One server for the module (its routing test runs last: it moves traffic to v2)."""
    unique = uuid.uuid4().hex[:10]
    update = {"admin_token": SecretStr(TOKEN), "topic_prefix": f"h-{unique}-"}
    settings = kafka.model_copy(update=update)
    ensure_topics(settings)
    model = f"fraud-{unique}"
    _, bundles = register_versions(settings, model, unique, 2)
    publish_routing(EventBus(settings), routing_event(model, {1: 1.0}, shadows=[2]))
    runtime = start_runtime(settings, model)
    online = {"card-known": Online(VECTOR, 1234)}
    server = HttpServer(create_app(runtime, lookup=online.get), "127.0.0.1", PORT).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield Served(client, runtime, bundles, model, settings)
    finally:
        server.stop()
        runtime.stop()


def expected(bundle: ModelBundle, values: Mapping[str, float]) -> float:
    return float(bundle.predict(np.array([[values[n] for n in FEATURES]]))[0])


def test_predict_from_body_and_from_online_features(served: Served) -> None:
    answer = served.client.post(
        "/predict", json={"entity_id": "card-1", "request_id": "r-1", "features": VECTOR}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["version"], body["route"], body["fallback"]) == (1, "champion", False)
    assert body["output"] == pytest.approx(expected(served.bundles[1], VECTOR), rel=1e-5)
    assert (body["features"], body["freshness_ms"]) == (VECTOR, None)
    online = served.client.post("/predict", json={"entity_id": "card-known"}).json()
    assert online["features_from"] == "online" and online["output"] == body["output"]
    assert online["features"] == VECTOR and online["event_time_ms"] == 1234
    assert online["freshness_ms"] >= 0
    unknown = served.client.post("/predict", json={"entity_id": "card-never-seen"})
    assert unknown.status_code == 404 and "card-never-seen" in unknown.text


def test_every_http_prediction_is_logged_and_shadows_never_returned(
    served: Served, unique: str
) -> None:
    def call(i: int) -> httpx.Response:
        body = {"entity_id": f"card-{i}", "request_id": f"h-{unique}-{i}", "features": VECTOR}
        return served.client.post("/predict", json=body)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(40)))
    assert all(a.status_code == 200 for a in answers)
    assert {(a.json()["version"], a.json()["route"]) for a in answers} == {(1, "champion")}
    codec = make_codec(served.settings)
    logged: list[Prediction] = []
    deadline = time.monotonic() + 60
    while len(logged) < 80 and time.monotonic() < deadline:
        records = read_topic(
            served.settings, "predictions", group=f"h-{time.time_ns()}", idle_timeout_s=1.5
        )
        logged = [Prediction.from_avro(codec.decode(r.value)[1]) for r in records]
    ours = [p for p in logged if p.request_id.startswith(f"http:h-{unique}-")]
    assert len(ours) == 80 and all(p.source == "http" for p in ours)
    assert sorted({p.route for p in ours}) == ["champion", "shadow"]
    assert {p.version for p in ours if p.route == "shadow"} == {2}
    assert all(p.features == VECTOR for p in ours)


def test_callers_sharing_a_request_id_each_get_their_own_answer(served: Served) -> None:
    """Two callers may choose the same id: each request gets an id of its own (``http:``), so
    answers never cross and an HTTP row never replaces a Kafka-scored one in the warehouse."""

    def call(i: int) -> tuple[dict[str, float], httpx.Response]:
        vector = {**VECTOR, "amount": i / 10}
        body = {"entity_id": f"card-{i}", "request_id": "same-id", "features": vector}
        return vector, served.client.post("/predict", json=body)

    with ThreadPoolExecutor(8) as pool:
        calls = list(pool.map(call, range(32)))
    assert all(answer.status_code == 200 for _, answer in calls)
    answers = [(vector, answer.json()) for vector, answer in calls]
    assert all(body["features"] == vector for vector, body in answers)
    assert all(body["client_request_id"] == "same-id" for _, body in answers)
    ids = [body["request_id"] for _, body in answers]
    assert len(set(ids)) == len(ids) and all(i.startswith("http:same-id:") for i in ids)


@pytest.mark.parametrize(
    ("content", "status", "words"),
    [
        (b'{"features": {"amount": 1}}', 422, "entity_id"),
        (b'{"entity_id": "e", "features": {"amount": "lots"}}', 422, "amount"),
        (b'{"entity_id": "e", "features": {"amount": NaN}}', 422, "amount"),
        (b'{"entity_id": "e", "features": {"amount": 1.0}}', 422, "velocity"),
        (b'{"entity_id": "e", "surprise": 1, "features": {}}', 422, "surprise"),
        (b"not json at all", 422, "JSON"),
        (b"[1, 2]", 422, "dict"),
        (b'{"entity_id": ""}', 422, "entity_id"),
    ],
)
def test_malformed_input_gets_a_4xx_with_the_reason(
    served: Served, content: bytes, status: int, words: str
) -> None:
    answer = served.client.post(
        "/predict", content=content, headers={"content-type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert words.lower() in answer.text.lower()


def test_health_and_models(served: Served) -> None:
    assert served.client.get("/healthz").json()["status"] == "ok"
    models = served.client.get("/models").json()
    assert models["registered"] == [1, 2]
    assert sorted(m["version"] for m in models["loaded"]) == [1, 2]
    assert models["routing"]["weights"] == {"1": 1.0} and models["routing"]["shadows"] == [2]


def test_admin_routing_needs_the_token_and_is_followed_live(served: Served) -> None:
    change = {"weights": {"v2": 1.0}, "reason": "canary done"}
    assert served.client.put("/admin/routing", json=change).status_code == 401
    wrong = {"authorization": "Bearer nope"}
    assert served.client.put("/admin/routing", json=change, headers=wrong).status_code == 401
    right = {"authorization": f"Bearer {TOKEN}"}
    bad = served.client.put("/admin/routing", json={"weights": {"v2": 0}}, headers=right)
    assert bad.status_code == 422 and "weight" in bad.text
    done = served.client.put("/admin/routing", json=change, headers=right)
    assert done.status_code == 200, done.text
    assert served.runtime.routing.wait_for(served.model, lambda r: r.weights == {"2": 1.0}, 30)
    body = {"entity_id": "card-1", "features": VECTOR}
    assert served.client.post("/predict", json=body).json()["version"] == 2
