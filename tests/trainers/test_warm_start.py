"""Warm start: completed trials of earlier studies, read back from the warehouse's runs table."""

from __future__ import annotations

import pytest

from headwater.infra.warehouse import ChdbWarehouse
from headwater.schemas.models import Run
from headwater.trainers.pipeline import prior_trials
from headwater.trainers.search import Objective
from headwater.trainers.search_space import default_space
from headwater.trainers.tracking import WarehouseRecorder

pytestmark = pytest.mark.integration


def _trial(model: str, number: int, status: str, params: dict[str, float | int]) -> Run:
    return Run(
        run_id=f"s-t{number}",
        kind="trial",
        model=model,
        study="s",
        trial_number=number,
        status=status,  # type: ignore[arg-type]
        step=3,
        params={**params, "search.prune": True},
        metrics={"valid_loss": 0.1 * (number + 1), "inference_ms_per_1k": 2.0},
        event_time_ms=1_000 + number,
    )


def test_prior_trials_come_typed_from_the_warehouse(warehouse: ChdbWarehouse, unique: str) -> None:
    model = f"warm-{unique}"
    params = {"width": 32, "depth": 2, "dropout": 0.1, "lr": 0.01, "weight_decay": 1e-4}
    recorder = WarehouseRecorder(warehouse)
    recorder.send("runs", _trial(model, 0, "completed", {**params, "batch_size": 64}))
    recorder.send("runs", _trial(model, 1, "pruned", {**params, "batch_size": 64}))
    recorder.send("runs", _trial(model, 2, "completed", {**params, "batch_size": 999}))
    recorder.send("runs", _trial(model, 3, "completed", params))  # misses batch_size
    recorder.flush()

    space = default_space()
    objectives = [Objective("valid_loss"), Objective("inference_ms_per_1k")]
    [prior] = prior_trials(warehouse, model, space, objectives)
    assert prior.params == {**params, "batch_size": 64}
    assert isinstance(prior.params["width"], int) and isinstance(prior.params["lr"], float)
    assert prior.values == (0.1, 2.0)
