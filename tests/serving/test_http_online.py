"""``POST /predict`` by entity id in production wiring: the real feature worker computes the
features, the real HTTP server process reads them through its changelog replica."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.serving.routing import publish_routing, routing_event
from tests.serving.modelkit import register_versions
from tests.streams.poison import transaction
from tests.streams.workers import decoded, start_worker, stop_worker, wait_until

pytestmark = pytest.mark.integration
PORT = int(os.environ.get("HEADWATER_TEST_PORT_BASE", "29000")) + 182
# Features of the demo feature set (headwater.demo.features) the model reads.
FEATURES = ("txn_count_1h", "amount_sum_1h", "amount_max_1h")


def _predict(client: httpx.Client, entity_id: str) -> httpx.Response | None:
    try:
        return client.post("/predict", json={"entity_id": entity_id})
    except httpx.TransportError:
        return None  # not listening yet


def test_predict_by_entity_reads_what_the_feature_worker_computed(
    topics: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    model = f"online-{unique}"
    _, bundles = register_versions(topics, model, unique, 1, features=FEATURES)
    bus = EventBus(topics)
    publish_routing(bus, routing_event(model, {1: 1.0}))
    card = f"card-{unique}"
    times = [1_700_000_000_000 + i * 60_000 for i in range(4)]  # within one hour
    for i, t in enumerate(times):
        bus.send_raw(transaction(i, card=card, t=t, amount=10.0 * (i + 1)))
    bus.flush()

    worker = start_worker(topics, "headwater.streams.worker", tmp_path / "worker.log")
    server = start_worker(
        topics,
        "headwater.serving.http_server",
        tmp_path / "http.log",
        HEADWATER_HTTP_PORT=str(PORT),
        HEADWATER_SERVING_MODEL=model,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=30) as client:
            answers: list[httpx.Response] = []

            def answered() -> bool:
                # 404 until the worker's changelog has the card, 503 until the topic exists.
                answer = _predict(client, card)
                if answer is not None:
                    answers.append(answer)
                return answer is not None and answer.status_code == 200

            wait_until(answered, 120, "an online prediction", tmp_path / "http.log")
            body: dict[str, Any] = answers[-1].json()
    finally:
        stop_worker(server)
        stop_worker(worker)

    vectors = [v for v in decoded(topics, "features", f"read-{unique}") if v["entity_id"] == card]
    newest = max(vectors, key=lambda v: v["event_time_ms"])
    assert newest["event_time_ms"] == times[-1]
    computed = {name: newest["values"][name] for name in FEATURES}
    assert computed == {"txn_count_1h": 4.0, "amount_sum_1h": 100.0, "amount_max_1h": 40.0}
    assert body["features_from"] == "online"
    assert body["features"] == computed  # what the worker computed, read by the model
    assert body["event_time_ms"] == times[-1]
    assert body["freshness_ms"] is not None and body["freshness_ms"] >= 0
    assert (body["version"], body["route"], body["fallback"]) == (1, "champion", False)
    row = np.array([[computed[name] for name in FEATURES]])
    assert body["output"] == pytest.approx(float(bundles[1].predict(row)[0]), rel=1e-5)
