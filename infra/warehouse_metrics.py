"""Platform-wide Prometheus metrics read from the warehouse views at scrape time.

Each process exports what it does itself (:mod:`headwater.infra.metrics`); this collector adds what
the
log says about the whole platform — routing weights, live quality, the latest drift statistics,
retrain requests, model lifecycle actions, predictions and dead letters — so one scrape of the
dashboard's ``/metrics`` shows the loop even where a process exports nothing. Names carry a
``headwater_warehouse_`` prefix so they never collide with a process's own series.

>>> WarehouseCollector.__name__
'WarehouseCollector'
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from headwater.core.errors import WarehouseError
from headwater.infra.warehouse import Warehouse

log = logging.getLogger("headwater.metrics")

# (name, help, kind, labels, query over the views; the value is the last column).
_QUERIES: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    (
        "routing_weight",
        "Current share of traffic per model version (v_routing_current)",
        "gauge",
        ("model", "version"),
        "SELECT model, version, weight FROM {db}.v_routing_current",
    ),
    (
        "model_quality",
        "Latest live quality window per model version, route and metric",
        "gauge",
        ("model", "version", "route", "metric"),
        "SELECT model, toString(version), route, metric, value FROM {db}.v_live_quality_latest",
    ),
    (
        "drift_statistic",
        "Latest drift statistic per model, feature and statistic",
        "gauge",
        ("model", "feature", "statistic"),
        "SELECT model, feature, statistic, argMax(value, detected_at_ms) "
        "FROM {db}.v_drift_timeline GROUP BY model, feature, statistic",
    ),
    (
        "open_alarms",
        "Drift alarms not yet answered by a promotion or rollback",
        "gauge",
        ("model", "severity"),
        "SELECT model, severity, count() FROM {db}.v_open_alarms GROUP BY model, severity",
    ),
    (
        "retrain_requests",
        "Retraining requests in the log",
        "counter",
        ("model",),
        "SELECT model, count() FROM {db}.v_retrain_requests GROUP BY model",
    ),
    (
        "model_version_actions",
        "Model lifecycle actions in the log",
        "counter",
        ("model", "action"),
        "SELECT model, action, count() FROM {db}.v_model_version_timeline GROUP BY model, action",
    ),
    (
        "predictions",
        "Predictions in the warehouse per model version and route",
        "counter",
        ("model", "version", "route"),
        "SELECT model, toString(version), route, sum(predictions) FROM {db}.v_prediction_latency "
        "GROUP BY model, version, route",
    ),
    (
        "deadletter_records",
        "Rejected records per source topic and reason",
        "counter",
        ("source_topic", "reason_code"),
        "SELECT source_topic, reason_code, records FROM {db}.v_deadletter_reasons",
    ),
)


class WarehouseCollector(Collector):
    """Collects :data:`_QUERIES` on every scrape; a failing query is logged and left out."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def describe(self) -> list[Metric]:
        # Describing without querying keeps registration free of warehouse round trips.
        return []

    def collect(self) -> Iterator[Metric]:
        for name, doc, kind, labels, sql in _QUERIES:
            full = f"headwater_warehouse_{name}"
            family: GaugeMetricFamily | CounterMetricFamily = (
                GaugeMetricFamily(full, doc, labels=list(labels))
                if kind == "gauge"
                else CounterMetricFamily(full, doc, labels=list(labels))
            )
            try:
                rows = self.warehouse.query(sql.replace("{db}", self.warehouse.database)).rows
            except WarehouseError as error:
                log.warning("metric %s not collected: %s", full, error)
                continue
            for row in rows:
                family.add_metric([str(v) for v in row[:-1]], float(row[-1]))
            yield family
