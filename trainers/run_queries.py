"""Reading runs back from the warehouse's ``runs`` table (what ``headwater runs`` prints).

A run is many rows (one per event); :func:`list_runs` folds them into one summary per run and
:func:`show_run` into the run's parameters, lineage, per-step metrics and final state.
"""

from __future__ import annotations

from typing import Any

from headwater.infra.sql_literals import render
from headwater.infra.warehouse import Warehouse
from headwater.trainers.errors import TrainerError

# Within one millisecond a final status outranks a step report, which outranks a start.
_ORDER = (
    "(event_time_ms, multiIf(status IN ('completed','failed','pruned'), 2, "
    "status = 'running', 1, 0), step)"
)


def list_runs(warehouse: Warehouse, model: str = "", limit: int = 50) -> list[dict[str, Any]]:
    """One summary per run, newest first."""
    where = f"WHERE model = {render(model)}" if model else ""
    sql = f"""
SELECT run_id, any(kind) AS kind, any(model) AS model, any(study) AS study,
       any(trial_number) AS trial_number, argMax(status, {_ORDER}) AS status,
       max(step) AS step, min(event_time_ms) AS started_ms, max(event_time_ms) AS updated_ms,
       argMaxIf(metrics, {_ORDER}, length(metrics) > 0) AS metrics,
       argMaxIf(artifacts, {_ORDER}, length(artifacts) > 0) AS artifacts,
       any(code_revision) AS code_revision
FROM (SELECT * FROM {warehouse.database}.runs FINAL {where})
GROUP BY run_id ORDER BY started_ms DESC, run_id LIMIT {int(limit)}
SETTINGS prefer_column_name_to_alias = 1
"""
    return warehouse.query(sql).dicts()


def show_run(warehouse: Warehouse, run_id: str) -> dict[str, Any]:
    """Everything recorded about one run."""
    events = warehouse.query(
        f"SELECT kind, model, study, trial_number, status, step, params, metrics, artifacts, "
        f"lineage, code_revision, message, event_time_ms FROM {warehouse.database}.runs FINAL "
        f"WHERE run_id = {render(run_id)} ORDER BY {_ORDER}"
    ).dicts()
    if not events:
        raise TrainerError(f"no run {run_id!r} in the warehouse (`headwater runs list` lists them)")
    first, last = events[0], events[-1]
    params: dict[str, Any] = {}
    lineage: dict[str, Any] = {}
    artifacts: dict[str, Any] = {}
    for event in events:
        params.update(event["params"])
        lineage.update(event["lineage"])
        artifacts.update(event["artifacts"])
    steps = [{"step": e["step"], **e["metrics"]} for e in events if e["status"] == "running"]
    final_metrics: dict[str, float] = next(
        (e["metrics"] for e in reversed(events) if e["metrics"]), {}
    )
    return {
        "run_id": run_id,
        "kind": first["kind"],
        "model": first["model"],
        "study": first["study"] or last["study"],
        "trial_number": first["trial_number"],
        "status": last["status"],
        "message": last["message"] or first["message"],
        "started_ms": first["event_time_ms"],
        "updated_ms": last["event_time_ms"],
        "params": params,
        "metrics": final_metrics,
        "steps": steps,
        "artifacts": artifacts,
        "lineage": lineage,
        "code_revision": first["code_revision"],
    }
