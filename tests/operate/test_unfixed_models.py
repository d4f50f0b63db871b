"""A model the loop cannot fix is visible in `headwater status`, the dashboard and /metrics."""

from __future__ import annotations

import uuid

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.dashboard.panels import PANELS_BY_KEY
from headwater.infra.metrics import METRICS
from headwater.infra.warehouse import ChdbWarehouse
from headwater.operate.operator_summary import operator_summary
from headwater.schemas.models import RETRAIN_CAP, DriftAlarm, ModelVersion
from headwater.trainers.tracking import WarehouseRecorder


def _alarm(model: str, statistic: str, at: int) -> DriftAlarm:
    return DriftAlarm(
        alarm_id=f"{statistic}:{model}:{at}",
        model=model,
        kind="quality" if statistic == RETRAIN_CAP else "concept",
        statistic=statistic,
        value=3.0 if statistic == RETRAIN_CAP else 0.4,
        threshold=3.0 if statistic == RETRAIN_CAP else 0.002,
        window_size=3,
        window_start_ms=at,
        window_end_ms=at,
        severity="critical",
        detected_at_ms=at,
    )


def _promoted(model: str, at: int) -> ModelVersion:
    return ModelVersion(model=model, version=4, action="promoted", event_time_ms=at)


def test_the_metric_is_set_by_the_cap_alarm_and_cleared_by_a_promotion() -> None:
    model = f"unfixed-{uuid.uuid4().hex[:8]}"
    METRICS.observe("drift", _alarm(model, "adwin", 1))
    assert METRICS.value("headwater_loop_cannot_fix", model=model) is None
    METRICS.observe("drift", _alarm(model, RETRAIN_CAP, 2))
    assert METRICS.value("headwater_loop_cannot_fix", model=model) == 1.0
    METRICS.observe("model-versions", _promoted(model, 3))
    assert METRICS.value("headwater_loop_cannot_fix", model=model) == 0.0


@pytest.mark.integration
def test_status_and_dashboard_show_the_model_until_a_promotion(
    warehouse: ChdbWarehouse, settings: HeadwaterSettings
) -> None:
    model = f"unfixed-{uuid.uuid4().hex[:8]}"
    recorder = WarehouseRecorder(warehouse)
    recorder.send("drift", _alarm(model, "adwin", 1_000))
    recorder.send("drift", _alarm(model, RETRAIN_CAP, 2_000))
    recorder.send("drift", _alarm(model, "page_hinkley", 3_000))
    recorder.flush()

    summary = operator_summary(settings, warehouse, kafka_reachable=False)
    assert summary.errors == []
    [row] = [r for r in summary.unfixed if r["model"] == model]
    assert (row["requests"], row["cap"]) == (3, 3)
    assert f"{model}" in summary.render().split("models the loop cannot fix")[1]

    panel = PANELS_BY_KEY["alarms"]
    rows = [
        r for r in warehouse.query(panel.query(warehouse.database)).dicts() if r["model"] == model
    ]
    assert rows[0]["statistic"] == RETRAIN_CAP  # on top while open, though not the latest

    recorder.send("model-versions", _promoted(model, 4_000))
    recorder.flush()
    summary = operator_summary(settings, warehouse, kafka_reachable=False)
    assert [r for r in summary.unfixed if r["model"] == model] == []
