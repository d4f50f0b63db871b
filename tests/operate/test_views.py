"""The operator views of ``infra/ddl/002_views.sql`` on the real embedded ClickHouse engine."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from headwater.infra.warehouse import ChdbWarehouse
from tests.operate.story import loop_story, write_story

VIEWS = (
    "v_topic_throughput",
    "v_consumer_lag",
    "v_consumer_lag_history",
    "v_prediction_latency",
    "v_prediction_distribution",
    "v_live_quality",
    "v_live_quality_latest",
    "v_drift_timeline",
    "v_open_alarms",
    "v_routing_weights",
    "v_routing_current",
    "v_model_version_timeline",
    "v_deadletter_reasons",
    "v_retrain_requests",
    "v_runs",
    "v_hpo_studies",
    "v_loop_timeline",
)

pytestmark = pytest.mark.integration


# Other tests share the session's warehouse: this module's rows carry a model name of its own.
MODEL = f"views-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def story(warehouse: ChdbWarehouse) -> ChdbWarehouse:
    start = int(time.time() * 1000) - 60_000
    write_story(warehouse, loop_story(start, MODEL), start, MODEL)
    return warehouse


def _rows(warehouse: ChdbWarehouse, sql: str) -> list[dict[str, Any]]:
    sql = sql.replace("{db}", warehouse.database).replace("{model}", MODEL)
    return warehouse.query(sql).dicts()


@pytest.mark.parametrize("view", VIEWS)
def test_each_view_returns_rows(story: ChdbWarehouse, view: str) -> None:
    assert _rows(story, f"SELECT * FROM {{db}}.{view} LIMIT 5"), f"{view} returned no rows"


def test_throughput_counts_every_prediction_once(story: ChdbWarehouse) -> None:
    rows = _rows(
        story,
        "SELECT sum(records) AS n, count(DISTINCT topic) AS topics FROM {db}.v_topic_throughput "
        "WHERE topic = 'predictions'",
    )
    total = _rows(story, "SELECT count() AS n FROM {db}.predictions FINAL")
    assert rows[0]["n"] == total[0]["n"]


def test_routing_current_is_the_latest_change(story: ChdbWarehouse) -> None:
    rows = _rows(story, "SELECT version, weight FROM {db}.v_routing_current WHERE model='{model}'")
    assert rows == [{"version": "2", "weight": 1.0}]


def test_promotion_closes_earlier_alarms_only(story: ChdbWarehouse) -> None:
    rows = _rows(
        story, "SELECT alarm_id FROM {db}.v_open_alarms WHERE model='{model}' ORDER BY alarm_id"
    )
    assert [r["alarm_id"] for r in rows] == [f"{MODEL}-a2"]


def test_loop_timeline_tells_the_loop_in_order(story: ChdbWarehouse) -> None:
    rows = _rows(
        story,
        "SELECT stage FROM {db}.v_loop_timeline WHERE model='{model}' ORDER BY at_ms, stage",
    )
    stages = [r["stage"] for r in rows]
    order = ["drift", "retrain", "trial completed", "registered", "canary", "promoted"]
    positions = [stages.index(stage, stages.index("drift")) for stage in order]
    assert positions == sorted(positions)


def test_consumer_lag_reads_the_latest_snapshot(story: ChdbWarehouse) -> None:
    rows = _rows(
        story,
        "SELECT partition, lag FROM {db}.v_consumer_lag WHERE group_id='{model}-sink' "
        "ORDER BY partition",
    )
    assert [r["lag"] for r in rows] == [14, 13, 12]


def test_hpo_study_counts_trials_by_outcome(story: ChdbWarehouse) -> None:
    rows = _rows(
        story, "SELECT trials, completed, pruned FROM {db}.v_hpo_studies WHERE model='{model}'"
    )
    assert rows == [{"trials": 2, "completed": 1, "pruned": 1}]


def test_event_to_prediction_latency_runs_from_the_arrival_on_events_raw(
    warehouse: ChdbWarehouse,
) -> None:
    """Events with simulated times (days in the past, as the demo's): the latency is the
    prediction's serving time minus its raw record's Kafka timestamp, never minus the event's
    own time; another prefix's raw record at the same offset is not taken for it."""
    prefix, model = f"lat-{uuid.uuid4().hex[:8]}-", f"latency-{uuid.uuid4().hex[:8]}"
    arrived = int(time.time() * 1000) - 5_000
    simulated = arrived - 10 * 86_400_000  # the event's own time: ten days before it arrived
    db = warehouse.database
    base = int(warehouse.query(f"SELECT max(_offset) + 1 FROM {db}.events_raw").scalar() or 0)
    raw, events, predictions, other = [], [], [], []
    for i in range(10):
        offset, event_id = base + i, f"tx-lat-{i}"
        raw.append(["card-1", "{}", arrived + i, f"{prefix}events.raw", 0, offset])
        # the same partition and offset under another prefix, arriving an hour earlier
        other.append(["card-1", "{}", arrived - 3_600_000, f"x{prefix}events.raw", 0, offset])
        events.append([event_id, "card-1", "tx", simulated + i, 0, offset, f"{prefix}events", 0, i])
        predictions.append(
            [event_id, "card-1", model, 1, "champion", 0.5, simulated + i,
             arrived + i + 40 + i, 1.0, False, f"{prefix}predictions", 0, i]
        )  # fmt: skip
    columns = ["key", "value", "kafka_timestamp_ms", "_topic", "_partition", "_offset"]
    warehouse.insert("events_raw", columns, raw + other)
    warehouse.insert(
        "events",
        ["event_id", "entity_id", "event_type", "event_time_ms", "source_partition",
         "source_offset", "_topic", "_partition", "_offset"],
        events,
    )  # fmt: skip
    warehouse.insert(
        "predictions",
        ["request_id", "entity_id", "model", "version", "route", "output", "event_time_ms",
         "served_at_ms", "latency_ms", "fallback", "_topic", "_partition", "_offset"],
        predictions,
    )  # fmt: skip

    rows = _rows(
        warehouse,
        "SELECT sum(predictions) AS n, sum(arrivals) AS arrived, "
        "max(event_to_prediction_p99_ms) AS p99, min(event_to_prediction_p50_ms) AS p50 "
        f"FROM {{db}}.v_prediction_latency WHERE model = '{model}'",
    )
    assert rows[0]["n"] == 10 and rows[0]["arrived"] == 10
    # served 40 + 2i ms after arriving (i < 10): between 40 and 58 ms, not ten days
    assert rows[0]["p50"] >= 40 and rows[0]["p99"] <= 58


def test_story_latency_is_from_arrival_to_serving(story: ChdbWarehouse) -> None:
    rows = _rows(
        story,
        "SELECT sum(arrivals) AS arrived, min(event_to_prediction_p50_ms) AS low, "
        "max(event_to_prediction_p99_ms) AS high FROM {db}.v_prediction_latency "
        "WHERE model = '{model}'",
    )
    # served 20-24 ms after the event's time, arrived 5 ms after it
    assert rows[0]["arrived"] == 40 and rows[0]["low"] >= 15 and rows[0]["high"] <= 19
