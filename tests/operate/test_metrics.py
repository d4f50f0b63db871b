"""``/metrics`` scraped over HTTP, as Prometheus would."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from headwater.core.settings import HeadwaterSettings
from headwater.infra.metrics import (
    PlatformMetrics,
    metrics_dir,
    serve_metrics,
    serve_process_metrics,
    serving_gauges,
)
from headwater.infra.warehouse import ChdbWarehouse
from headwater.infra.warehouse_metrics import WarehouseCollector
from headwater.schemas.models import DriftAlarm, Prediction, RetrainRequest, Routing
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


class _Chain:
    def __init__(self) -> None:
        self.states = {1: "closed", 2: "open"}

    def breaker_states(self) -> dict[int, str]:
        return dict(self.states)


class _Table:
    def __init__(self) -> None:
        self.current = Routing(model="fraud", weights={"1": 0.9, "2": 0.1}, updated_at_ms=1)

    def event(self, model: str) -> Routing | None:
        return self.current if model == "fraud" else None


@dataclass
class _Runtime:
    model: str = "fraud"
    chain: _Chain = field(default_factory=_Chain)
    routing: _Table = field(default_factory=_Table)


def test_a_scoring_process_exports_its_live_breakers_and_routing() -> None:
    metrics, runtime = PlatformMetrics(), _Runtime()
    metrics.before_scrape(serving_gauges(metrics, runtime))
    breaker = ("headwater_breaker_state", frozenset({("name", "fraud@2")}))
    weight_2 = ("headwater_routing_weight", frozenset({("model", "fraud"), ("version", "2")}))
    samples = _samples(generate_latest(metrics.registry).decode())
    assert samples[breaker] == 2 and samples[weight_2] == 0.1

    runtime.chain.states[2] = "half_open"
    runtime.routing.current = Routing(model="fraud", weights={"2": 1.0}, updated_at_ms=2)
    samples = _samples(generate_latest(metrics.registry).decode())  # read at scrape time
    assert samples[breaker] == 1
    weights = {k: v for k, v in samples.items() if k[0] == "headwater_routing_weight"}
    assert weights == {weight_2: 1.0}  # version 1 left the routing table


def test_process_metrics_are_off_with_port_zero(settings: HeadwaterSettings) -> None:
    assert serve_process_metrics(settings.model_copy(update={"metrics_port": 0}), "off") is None
