"""Warm start: completed trials of earlier studies, read back from the warehouse's runs table."""

from __future__ import annotations

from pathlib import Path

import pytest

from headwater.infra.warehouse import ChdbWarehouse
from headwater.schemas.models import Run
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.pipeline import champion_params, prior_trials
from headwater.trainers.registry import MemoryPublisher, ModelRegistry
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


def test_champion_params_are_those_of_the_champions_run(
    warehouse: ChdbWarehouse, unique: str, tmp_path: Path
) -> None:
    model = f"champ-{unique}"
    store = ArtifactStore(tmp_path)
    registry = ModelRegistry(store, MemoryPublisher())
    space = default_space()
    assert champion_params(warehouse, registry, model, space) is None  # no champion yet
    params = {"width": 24, "depth": 3, "dropout": 0.2, "lr": 0.005, "weight_decay": 1e-5}
    run = _trial(model, 0, "completed", {**params, "batch_size": 128, "epochs": 8})
    run = run.model_copy(update={"run_id": f"{model}-run", "kind": "run", "study": ""})
    recorder = WarehouseRecorder(warehouse)
    recorder.send("runs", run)
    recorder.flush()
    v1 = registry.register(model, store.put_bytes(b"w1"), run_id=run.run_id, actor="test")
    registry.promote(model, v1.version, reason="first", actor="test")
    assert champion_params(warehouse, registry, model, space) == {**params, "batch_size": 128}
