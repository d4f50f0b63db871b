"""Prometheus metrics of the platform, and ``/metrics`` for every long-running process.

Processes record what they do on :data:`METRICS` (one :class:`PlatformMetrics` per process) and
call :func:`serve_metrics` once at start; any Prometheus picks them up. Events that already say
what happened (a prediction with its latency, a drift alarm, a routing change) update the right
metrics through :meth:`PlatformMetrics.observe`, so callers need not know the metric names.

>>> from schemas.models import Routing
>>> m = PlatformMetrics()
>>> m.observe("routing", Routing(model="fraud", weights={"1": 0.9, "2": 0.1}, updated_at_ms=1))
>>> m.value("headwater_routing_weight", model="fraud", version="2")
0.1
>>> m.records.labels(topic="events", stage="validate").inc(3)
>>> m.value("headwater_records_total", topic="events", stage="validate")
3.0
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from infra.errors import PortInUse
from infra.settings import HeadwaterSettings
from schemas.models import (
    DeadLetter,
    DriftAlarm,
    EventModel,
    Metric,
    ModelVersion,
    Prediction,
    RetrainRequest,
    Routing,
)

# Latency buckets in seconds: sub-millisecond scoring up to multi-second end-to-end paths.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Circuit-breaker states as gauge values, so a graph shows transitions (Hystrix's three states).
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class PlatformMetrics:
    """The platform's metrics on a registry of their own (tests make as many as they like)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "headwater_records", "Records processed", ["topic", "stage"], registry=r
        )
        self.deadletters = Counter(
            "headwater_deadletter_records",
            "Records rejected to the deadletter topic",
            ["source_topic", "reason_code"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "headwater_consumer_lag",
            "Records between a consumer group's committed offset and the partition's end",
            ["group", "topic", "partition"],
            registry=r,
        )
        self.scoring_latency = Histogram(
            "headwater_scoring_latency_seconds",
            "Time to score one request",
            ["model", "version", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.event_to_prediction = Histogram(
            "headwater_event_to_prediction_seconds",
            "From an event's time to its prediction being served",
            ["model", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "headwater_fallbacks",
            "Predictions served by a fallback",
            ["model", "reason"],
            registry=r,
        )
        self._loop_metrics()

    def _loop_metrics(self) -> None:
        """Serving and the closed loop: breakers, routing, quality, drift, retrains, versions."""
        r = self.registry
        self.breaker_state = Gauge(
            "headwater_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            ["name"],
            registry=r,
        )
        self.routing_weight = Gauge(
            "headwater_routing_weight",
            "Share of traffic routed to a model version",
            ["model", "version"],
            registry=r,
        )
        self.model_quality = Gauge(
            "headwater_model_quality",
            "Latest live quality window per model version and route",
            ["model", "version", "route", "metric"],
            registry=r,
        )
        self.drift_statistic = Gauge(
            "headwater_drift_statistic",
            "Latest drift statistic per model and feature",
            ["model", "feature", "statistic"],
            registry=r,
        )
        self.drift_alarms = Counter(
            "headwater_drift_alarms",
            "Drift alarms raised",
            ["model", "kind", "severity"],
            registry=r,
        )
        self.retrains = Counter(
            "headwater_retrain_requests", "Retraining requested", ["model"], registry=r
        )
        self.model_actions = Counter(
            "headwater_model_version_actions",
            "Model lifecycle actions: registered, canary, promoted, rolled_back, ...",
            ["model", "action"],
            registry=r,
        )

    def set_breaker(self, name: str, state: str) -> None:
        """Record a breaker's state by name (``closed``, ``half_open`` or ``open``)."""
        self.breaker_state.labels(name=name).set(BREAKER_STATES[state])

    def observe(self, topic: str, record: EventModel) -> None:
        """Count a record on ``topic`` and update the metrics its content feeds."""
        self.records.labels(topic=topic, stage="observed").inc()
        match record:
            case Prediction():
                labels = {"model": record.model, "route": record.route}
                self.scoring_latency.labels(version=str(record.version), **labels).observe(
                    record.latency_ms / 1000
                )
                delay_ms = max(record.served_at_ms - record.event_time_ms, 0)
                self.event_to_prediction.labels(**labels).observe(delay_ms / 1000)
                if record.fallback:
                    self.fallbacks.labels(model=record.model, reason=record.fallback_reason).inc()
            case DeadLetter():
                self.deadletters.labels(
                    source_topic=record.source_topic, reason_code=record.reason_code
                ).inc()
            case Routing():
                for version, weight in record.weights.items():
                    self.routing_weight.labels(model=record.model, version=version).set(weight)
            case Metric():
                self.model_quality.labels(
                    model=record.model,
                    version=str(record.version),
                    route=record.route,
                    metric=record.metric,
                ).set(record.value)
            case DriftAlarm():
                self.drift_statistic.labels(
                    model=record.model, feature=record.feature, statistic=record.statistic
                ).set(record.value)
                self.drift_alarms.labels(
                    model=record.model, kind=record.kind, severity=record.severity
                ).inc()
            case RetrainRequest():
                self.retrains.labels(model=record.model).inc()
            case ModelVersion():
                self.model_actions.labels(model=record.model, action=record.action).inc()
            case _:
                pass

    def value(self, name: str, **labels: str) -> float | None:
        """The current value of one sample (``_total`` included for counters), or None."""
        return self.registry.get_sample_value(name, labels)


METRICS = PlatformMetrics()
"""This process's metrics: record here, and :func:`serve_metrics` exposes them."""


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint; :meth:`close` stops it."""

    role: str
    host: str
    port: int
    _server: WSGIServer
    _thread: Thread
    _record: Path | None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self._record is not None:
            self._record.unlink(missing_ok=True)


def metrics_dir(settings: HeadwaterSettings) -> Path:
    """Where each serving process records its address, so status can list the endpoints."""
    return settings.home / "metrics"


def serve_metrics(
    settings: HeadwaterSettings,
    role: str,
    metrics: PlatformMetrics | None = None,
    port: int | None = None,
    tries: int = 16,
) -> MetricsServer:
    """Serve ``/metrics`` on ``settings.bind_host``, from ``HEADWATER_METRICS_PORT`` upwards:
    several processes on one machine each take the next free port (up to ``tries``). Port 0
    picks any free port. The address is written to ``HEADWATER_HOME/metrics/<role>-<pid>.json``.
    """
    registry = (metrics or METRICS).registry
    first = settings.metrics_port if port is None else port
    candidates = [0] if first == 0 else range(first, min(first + tries, 65536))
    last_error: OSError | None = None
    for candidate in candidates:
        try:
            server, thread = start_http_server(
                candidate, addr=settings.bind_host, registry=registry
            )
        except OSError as error:
            last_error = error
            continue
        record = metrics_dir(settings) / f"{role}-{os.getpid()}.json"
        bound = MetricsServer(role, settings.bind_host, server.server_port, server, thread, record)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"role": role, "pid": os.getpid(), "url": bound.url}))
        return bound
    raise PortInUse(
        f"no free port for /metrics of {role} on {settings.bind_host} from {first} "
        f"({tries} tried: {last_error}); set HEADWATER_METRICS_PORT"
    )
