"""The HTTP batch queue is bounded: behind a model that hangs, requests beyond
``HEADWATER_SERVING_HTTP_QUEUE_MAX`` are answered 503 at once, and the server answers again
once the model does."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

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
PORT = int(os.environ.get("HEADWATER_TEST_PORT_BASE", "29000")) + 182
VECTOR = {"amount": 0.7, "velocity": 1.2, "distance": -0.3}


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_a_full_queue_answers_503(
    topics: HeadwaterSettings, unique: str, release: threading.Event
) -> None:
    update = {"serving_timeout_s": 60.0, "serving_batch_max": 1, "serving_http_queue_max": 2}
    settings = topics.model_copy(update=update)
    model = f"fraud-{unique}"
    _, bundles = register_versions(settings, model, unique, 1)
    publish_routing(EventBus(settings), routing_event(model, {1: 1.0}))
    runtime = start_runtime(settings, model)
    hanging = Sabotaged(bundles[1], release)

    def load(version: int) -> Predictor:
        runtime.loader.get(model, version)
        return hanging

    runtime.chain.load = load
    server = HttpServer(create_app(runtime), "127.0.0.1", PORT).start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            body = {"entity_id": "card-1", "features": VECTOR}
            assert client.post("/predict", json=body).status_code == 200
            hanging.mode = "hang"
            with ThreadPoolExecutor(24) as pool:
                pending = [pool.submit(client.post, "/predict", json=body) for _ in range(24)]
                # The hung batches and 2 waiting requests stay; the rest are answered at once.
                done, _ = wait(pending, timeout=120, return_when=FIRST_COMPLETED)
                assert done, "no request was answered while the model hung"
                release.set()
                answers = [f.result() for f in pending]
            statuses = sorted(a.status_code for a in answers)
            assert set(statuses) == {200, 503}, statuses
            full = next(a for a in answers if a.status_code == 503)
            assert "HEADWATER_SERVING_HTTP_QUEUE_MAX" in full.text
            assert full.headers["Retry-After"] == "1"
            assert client.post("/predict", json=body).status_code == 200
    finally:
        release.set()
        server.stop()
        runtime.stop()
