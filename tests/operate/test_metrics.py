"""``/metrics`` scraped over HTTP, as Prometheus would."""

from __future__ import annotations

import json
import os
import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.metrics import PlatformMetrics, metrics_dir, serve_metrics
from infra.settings import HeadwaterSettings
from infra.warehouse import ChdbWarehouse
from infra.warehouse_metrics import WarehouseCollector
from schemas.models import DriftAlarm, Prediction, RetrainRequest, Routing
from tests.operate.story import loop_story, write_story

_PORT = int(os.environ.get("HEADWATER_TEST_PORT_BASE", "29000")) + 64


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _record(metrics: PlatformMetrics) -> None:
    metrics.observe(
        "predictions",
        Prediction(
            request_id="r1", entity_id="c1", model="fraud", version=3, route="canary",
            output=0.7, features={}, event_time_ms=1_000, served_at_ms=1_040, latency_ms=2.0,
        ),
    )  # fmt: skip
    metrics.observe("routing", Routing(model="fraud", weights={"3": 0.25}, updated_at_ms=1))
    metrics.observe(
        "drift",
        DriftAlarm(
            alarm_id="a", model="fraud", feature="amount", kind="data", statistic="psi",
            value=0.3, threshold=0.2, window_size=10, window_start_ms=0, window_end_ms=1,
            severity="critical", detected_at_ms=1,
        ),
    )  # fmt: skip
    request = RetrainRequest(request_id="q", model="fraud", reason="d", requested_at_ms=1)
    metrics.observe("retrain-requests", request)
    metrics.consumer_lag.labels(group="sink", topic="events", partition="0").set(42)
    metrics.set_breaker("fraud@3", "open")


def test_metrics_endpoint_is_scraped_over_http(settings: HeadwaterSettings) -> None:
    metrics = PlatformMetrics()
    _record(metrics)
    server = serve_metrics(settings, "test-role", metrics, port=_PORT)
    try:
        response = httpx.get(server.url, timeout=5)
        record = json.loads((metrics_dir(settings) / f"test-role-{os.getpid()}.json").read_text())
    finally:
        server.close()

    assert response.status_code == 200
    assert record["url"] == server.url
    samples = _samples(response.text)
    canary = {("model", "fraud"), ("version", "3"), ("route", "canary")}
    assert samples[("headwater_scoring_latency_seconds_count", frozenset(canary))] == 1
    weight = frozenset({("model", "fraud"), ("version", "3")})
    assert samples[("headwater_routing_weight", weight)] == 0.25
    assert samples[("headwater_breaker_state", frozenset({("name", "fraud@3")}))] == 2
    assert samples[("headwater_retrain_requests_total", frozenset({("model", "fraud")}))] == 1
    lag = frozenset({("group", "sink"), ("topic", "events"), ("partition", "0")})
    assert samples[("headwater_consumer_lag", lag)] == 42
    drift = frozenset({("model", "fraud"), ("feature", "amount"), ("statistic", "psi")})
    assert samples[("headwater_drift_statistic", drift)] == 0.3


def test_a_second_process_on_the_same_host_takes_the_next_port(
    settings: HeadwaterSettings,
) -> None:
    first = serve_metrics(settings, "one", PlatformMetrics(), port=_PORT + 1)
    try:
        second = serve_metrics(settings, "two", PlatformMetrics(), port=first.port)
        try:
            assert second.port > first.port
            assert httpx.get(second.url, timeout=5).status_code == 200
        finally:
            second.close()
    finally:
        first.close()


@pytest.mark.integration
def test_platform_metrics_from_the_warehouse_views(
    settings: HeadwaterSettings, warehouse: ChdbWarehouse
) -> None:
    model = f"prom-{uuid.uuid4().hex[:8]}"
    start = int(time.time() * 1000) - 60_000
    write_story(warehouse, loop_story(start, model), start, model)
    metrics = PlatformMetrics()
    metrics.registry.register(WarehouseCollector(warehouse))
    server = serve_metrics(settings, "warehouse", metrics, port=_PORT + 2)
    try:
        samples = _samples(httpx.get(server.url, timeout=10).text)
    finally:
        server.close()

    weight = frozenset({("model", model), ("version", "2")})
    assert samples[("headwater_warehouse_routing_weight", weight)] == 1.0
    retrains = frozenset({("model", model)})
    assert samples[("headwater_warehouse_retrain_requests_total", retrains)] == 1
    alarms = frozenset({("model", model), ("severity", "warning")})
    assert samples[("headwater_warehouse_open_alarms", alarms)] == 1
    promoted = frozenset({("model", model), ("action", "promoted")})
    assert samples[("headwater_warehouse_model_version_actions_total", promoted)] == 2
