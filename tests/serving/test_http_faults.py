"""A model that hangs or raises behind the HTTP server: answers fall back, flagged, and the
server keeps answering everything else meanwhile."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.serving.fallback import Predictor
from headwater.serving.http_app import create_app
from headwater.serving.http_server import HttpServer
from headwater.serving.routing import publish_routing, routing_event
from headwater.serving.runtime import start_runtime
from tests.serving.modelkit import Sabotaged, register_versions

pytestmark = pytest.mark.integration
PORT = int(os.environ.get("HEADWATER_TEST_PORT_BASE", "29000")) + 181
VECTOR = {"amount": 0.7, "velocity": 1.2, "distance": -0.3}


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_hanging_and_raising_models_fall_back_without_stalling_the_server(
    topics: HeadwaterSettings, unique: str, release: threading.Event
) -> None:
    settings = topics.model_copy(update={"serving_timeout_s": 0.5})
    model = f"fraud-{unique}"
    _, bundles = register_versions(settings, model, unique, 2)
    bus = EventBus(settings)
    publish_routing(bus, routing_event(model, {1: 1.0}))
    runtime = start_runtime(settings, model)
    corrupted = ValueError("corrupted activations")
    models = {v: Sabotaged(b, release, corrupted) for v, b in bundles.items()}

    def load(version: int) -> Predictor:
        runtime.loader.get(model, version)  # the real loading path still decides
        return models[version]

    runtime.chain.load = load
    server = HttpServer(create_app(runtime), "127.0.0.1", PORT).start()
    body = {"entity_id": "card-1", "features": VECTOR}
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/predict", json=body).json()["version"] == 1
            publish_routing(bus, routing_event(model, {2: 1.0}))
            assert runtime.routing.wait_for(model, lambda r: r.weights == {"2": 1.0}, 30)
            models[2].mode = "hang"
            answers: list[httpx.Response] = []
            hung = threading.Thread(
                target=lambda: answers.append(client.post("/predict", json=body))
            )
            hung.start()
            time.sleep(0.1)  # the hung call is in flight: the server must still answer
            assert client.get("/healthz").status_code == 200
            hung.join(30)
            answer = answers[0].json()
            assert (answer["version"], answer["fallback"]) == (1, True)
            assert "no answer within 0.5 s" in answer["fallback_reason"]

            models[2].mode = "raise"
            raised = client.post("/predict", json=body).json()
            assert raised["fallback"] and "corrupted activations" in raised["fallback_reason"]
            models[1].mode = "raise"
            default = client.post("/predict", json=body).json()
            assert (default["version"], default["route"], default["output"]) == (0, "default", 0.0)
            assert client.get("/models").json()["breakers"]["2"] == "closed"
    finally:
        release.set()
        server.stop()
        runtime.stop()
