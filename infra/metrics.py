"""Prometheus metrics of the platform, and ``/metrics`` for every long-running process.

Processes record what they do on :data:`METRICS` (one :class:`PlatformMetrics` per process) and
call :func:`serve_process_metrics` once at start; any Prometheus picks them up
(:func:`serve_metrics` is the strict form: any registry, a chosen port, an error when none is
free). Events that already say what happened (a prediction with its latency, a drift alarm, a
routing change) update the right metrics through :meth:`PlatformMetrics.observe`, and batches go
through :func:`record_batch`, so callers need not know the metric names. Gauges of live state
(breakers, routing, drift windows) are set just before each scrape by refreshers
(:meth:`PlatformMetrics.before_scrape`).

>>> from headwater.schemas.models import Routing
>>> m = PlatformMetrics()
>>> m.observe("routing", Routing(model="fraud", weights={"1": 0.9, "2": 0.1}, updated_at_ms=1))
>>> m.value("headwater_routing_weight", model="fraud", version="2")
0.1
>>> m.records.labels(topic="events", stage="validate").inc(3)
>>> m.value("headwater_records_total", topic="events", stage="validate")
3.0
>>> from headwater.schemas.models import Prediction
>>> p = Prediction(request_id="e1", entity_id="c1", model="fraud", version=1, route="champion",
...                output=0.2, features={}, event_time_ms=1_000, served_at_ms=4_500, latency_ms=2.0)
>>> m.observe("predictions", p)
>>> m.value("headwater_event_time_lag_seconds_sum", model="fraud", route="champion")
3.5
>>> m.batch("features", "events.raw", records=500, seconds=0.02, rejected=3)
>>> m.value("headwater_records_total", topic="events.raw", stage="features")
500.0
>>> m.value("headwater_batch_duration_seconds_count", stage="features")
1.0
"""

from __future__ import annotations

import atexit
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from threading import Thread
from typing import Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import Metric as PromMetric

from headwater.core.errors import PortInUse
from headwater.core.settings import HeadwaterSettings
from headwater.schemas.legacy_framing import LEGACY_READS, LegacyReads
from headwater.schemas.models import (
    RETRAIN_CAP,
    DeadLetter,
    DriftAlarm,
    EventModel,
    Metric,
    ModelVersion,
    Prediction,
    RetrainRequest,
    Routing,
)

log = logging.getLogger("headwater.metrics")

# Latency buckets in seconds: sub-millisecond scoring up to multi-second end-to-end paths.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Circuit-breaker states as gauge values, so a graph shows transitions (Hystrix's three states).
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}

# Records per batch, and durations of work that takes seconds to an hour (retrains, trials).
BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 500, 1000, 5000, 10000, 50000)
LONG_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class _BeforeScrape:
    """Registered first, so the refreshers it runs set gauges before they are collected."""

    def __init__(self) -> None:
        self.refreshers: list[Callable[[], None]] = []

    def collect(self) -> list[PromMetric]:
        for refresh in self.refreshers:
            try:
                refresh()
            except Exception as error:  # a scrape must not fail for one stale gauge
                log.warning("metrics refresh failed: %s", error)
        return []


class _LegacyFraming:
    """Exports the process's reads of old-order single-object headers (``LegacyReads``)."""

    def __init__(self, reads: LegacyReads) -> None:
        self.reads = reads

    def collect(self) -> list[PromMetric]:
        family = CounterMetricFamily(
            "headwater_legacy_fingerprint_reads",
            "Records read whose single-object fingerprint is in the pre-0.2 reversed byte order",
            labels=["schema"],
        )
        for schema, count in sorted(self.reads.counts().items()):
            family.add_metric([schema], count)
        return [family]


class PlatformMetrics:
    """The platform's metrics on a registry of their own (tests make as many as they like)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._before_scrape = _BeforeScrape()
        r.register(self._before_scrape)
        r.register(_LegacyFraming(LEGACY_READS))
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
        # Event-time lag, honestly named: a prediction carries its features' event time, not
        # when their record arrived on events.raw, so this includes how late the application
        # stamped or sent the event (days, for replayed or simulated times). The latency from
        # arrival is the warehouse's v_prediction_latency (infra/ddl/005_arrival_latency.sql),
        # which joins the raw record's Kafka timestamp.
        self.event_time_lag = Histogram(
            "headwater_event_time_lag_seconds",
            "From an event's own event time to its prediction being served (event-time lag, "
            "not the latency from arrival on events.raw)",
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
        self.process_restarts = Counter(
            "headwater_process_restarts",
            "Restarts of a crashed platform process by the supervisor",
            ["process"],
            registry=r,
        )
        self.process_given_up = Gauge(
            "headwater_process_given_up",
            "1 when the supervisor gave up on a process after repeated crashes",
            ["process"],
            registry=r,
        )
        self._loop_metrics()
        self._work_metrics()

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
        self.drift_threshold = Gauge(
            "headwater_drift_threshold",
            "The threshold the latest drift statistic is held to, per model and feature",
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
        self.loop_cannot_fix = Gauge(
            "headwater_loop_cannot_fix",
            "1 while a model is still degraded after the loop's capped retrain requests, "
            "until a version of it is promoted",
            ["model"],
            registry=r,
        )

    def _work_metrics(self) -> None:
        """Batches of the stream processes, and the trainers' retrains and trials."""
        r = self.registry
        self.batch_duration = Histogram(
            "headwater_batch_duration_seconds",
            "Time to handle one batch, by stage (features, sink, an agent's group)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "headwater_batch_records",
            "Records per batch, by stage",
            ["stage"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.failures = Counter(
            "headwater_failures",
            "Failed attempts that were retried or reported (an insert, a retrain, a trial)",
            ["stage", "reason"],
            registry=r,
        )
        self.paused = Gauge(
            "headwater_consumer_paused",
            "1 while a process has paused its partitions (its downstream fails)",
            ["stage"],
            registry=r,
        )
        self.retrains_finished = Counter(
            "headwater_retrains",
            "Retrains finished by the retrain worker: registered or failed",
            ["model", "outcome"],
            registry=r,
        )
        self.retrains_running = Gauge(
            "headwater_retrains_running", "Retrains running now", ["model"], registry=r
        )
        self.retrain_duration = Histogram(
            "headwater_retrain_duration_seconds",
            "Time of one retrain (dataset, search, registration)",
            ["model"],
            buckets=LONG_BUCKETS,
            registry=r,
        )
        self.trials = Counter(
            "headwater_trials",
            "Trials run by a trial worker: completed, pruned, failed",
            ["model", "status"],
            registry=r,
        )
        self.trial_duration = Histogram(
            "headwater_trial_duration_seconds",
            "Time of one trial",
            ["model"],
            buckets=LONG_BUCKETS,
            registry=r,
        )

    def before_scrape(self, refresh: Callable[[], None]) -> None:
        """Run ``refresh`` before every scrape (to set gauges from live state)."""
        self._before_scrape.refreshers.append(refresh)

    def batch(
        self, stage: str, topic: str, records: int, seconds: float, *, rejected: int = 0
    ) -> None:
        """One batch of ``records`` read from ``topic`` handled by ``stage`` in ``seconds``,
        ``rejected`` of them sent to ``deadletter``."""
        self.records.labels(topic=topic, stage=stage).inc(records)
        if rejected:
            self.records.labels(topic="deadletter", stage=stage).inc(rejected)
        self.batch_duration.labels(stage=stage).observe(seconds)
        self.batch_size.labels(stage=stage).observe(records)

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
                self.event_time_lag.labels(**labels).observe(delay_ms / 1000)
                if record.fallback:
                    self.fallbacks.labels(model=record.model, reason=record.fallback_reason).inc()
            case DeadLetter():
                self.deadletters.labels(
                    source_topic=record.source_topic, reason_code=record.reason_code
                ).inc()
            case Routing():
                self.observe_routing(record)
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
                if record.statistic == RETRAIN_CAP:
                    self.loop_cannot_fix.labels(model=record.model).set(1)
            case RetrainRequest():
                self.retrains.labels(model=record.model).inc()
            case ModelVersion():
                self.model_actions.labels(model=record.model, action=record.action).inc()
                if record.action == "promoted":
                    self.loop_cannot_fix.labels(model=record.model).set(0)
            case _:
                pass

    def observe_routing(self, routing: Routing) -> None:
        for version, weight in routing.weights.items():
            self.routing_weight.labels(model=routing.model, version=version).set(weight)

    def value(self, name: str, **labels: str) -> float | None:
        """The current value of one sample (``_total`` included for counters), or None."""
        return self.registry.get_sample_value(name, labels)


METRICS = PlatformMetrics()
"""This process's metrics: record here, and :func:`serve_metrics` exposes them."""


def record_batch(
    stage: str, topic: str, records: int, seconds: float, *, rejected: int = 0
) -> None:
    """Record one batch on this process's :data:`METRICS` (see :meth:`PlatformMetrics.batch`):
    e.g. the feature worker's ``record_batch("features", "events.raw", len(batch), took,
    rejected=out.rejected)``."""
    METRICS.batch(stage, topic, records, seconds, rejected=rejected)


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


class _Breakers(Protocol):
    def breaker_states(self) -> dict[int, str]: ...


class _RoutingTable(Protocol):
    def event(self, model: str) -> Routing | None: ...


class ServingState(Protocol):
    """What a scoring process's metrics read of its runtime at scrape time."""

    @property
    def model(self) -> str: ...

    @property
    def chain(self) -> _Breakers: ...

    @property
    def routing(self) -> _RoutingTable: ...


def serving_gauges(metrics: PlatformMetrics, serving: ServingState) -> Callable[[], None]:
    """A refresher setting the breaker-state and routing-weight gauges from a live runtime."""

    def refresh() -> None:
        for version, state in serving.chain.breaker_states().items():
            metrics.set_breaker(f"{serving.model}@{version}", state)
        routing = serving.routing.event(serving.model)
        if routing is not None:
            metrics.routing_weight.clear()  # versions no longer routed leave the table
            metrics.observe_routing(routing)

    return refresh


def serve_process_metrics(
    settings: HeadwaterSettings, role: str, *, serving: ServingState | None = None
) -> MetricsServer | None:
    """``/metrics`` of a long-running process's :data:`METRICS`, called once at start; with
    ``serving``, also its breakers and routing weights. None when ``HEADWATER_METRICS_PORT``
    is 0 (off) or no port is free: metrics never stop a process from doing its work (the
    warning names the setting). The endpoint closes, and its record goes, at exit."""
    if serving is not None:
        METRICS.before_scrape(serving_gauges(METRICS, serving))
    if settings.metrics_port == 0:
        return None
    try:
        server = serve_metrics(settings, role)
    except PortInUse as error:
        log.warning("%s", error)
        return None
    atexit.register(server.close)
    log.info("%s: metrics on %s", role, server.url)
    return server
