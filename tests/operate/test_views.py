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
