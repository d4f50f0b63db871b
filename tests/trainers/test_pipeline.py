"""Training end to end in-process: warehouse → dataset → run → artifacts → registry → runs."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import ensure_topics
from headwater.infra.warehouse import ChdbWarehouse
from headwater.schemas.models import RetrainRequest
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.model_family import load_bundle
from headwater.trainers.pipeline import TrainRequest, train_model
from headwater.trainers.registry import replay_state
from headwater.trainers.retrain import RetrainWorker, labelled_rows_since
from headwater.trainers.run_queries import list_runs, show_run
from tests.trainers.warehouse_data import insert_history

pytestmark = pytest.mark.integration


def _isolated(kafka: HeadwaterSettings, unique: str, tmp_path: Path) -> HeadwaterSettings:
    settings = kafka.model_copy(
        update={"topic_prefix": f"pipe-{unique}-", "artifact_store": str(tmp_path / "store")}
    )
    ensure_topics(settings)
    return settings


def test_a_single_run_is_tracked_stored_and_registered(
    kafka: HeadwaterSettings, warehouse: ChdbWarehouse, unique: str, tmp_path: Path
) -> None:
    settings = _isolated(kafka, unique, tmp_path)
    model, fs = f"fraud-{unique}", f"fs-{unique}"
    insert_history(warehouse, model, fs)
    # Two torchrun processes (gloo): the distributed path, tracked like any run.
    request = TrainRequest(model=model, feature_set=fs, epochs=4, nproc=2, params={"lr": 0.01})
    outcome = train_model(settings, request, warehouse)

    assert outcome.version == 1 and outcome.metrics["valid_auc"] > 0.7
    store = ArtifactStore.from_settings(settings)
    bundle = load_bundle(store.get_bytes(outcome.artifacts["bundle"]))
    assert bundle.feature_names == ("amount", "mean_1h", "n_1h")
    assert bundle.metadata["run_id"] == outcome.run_id
    # The loop watches the version only on events after its training data.
    assert bundle.metadata["data_end_ms"] == outcome.lineage["data_end_ms"]
    for name in ("dataset", "reference", "preprocessing"):
        store.verify(outcome.artifacts[name])
    assert outcome.lineage["row_count"] == "400"
    assert outcome.lineage["rows_logged_features"] == "134"

    state = replay_state(settings)
    version = state.version(model, 1)
    assert version.artifact_sha256 == outcome.artifacts["bundle"]
    assert version.run_id == outcome.run_id
    assert version.signature["inputs"] == "amount,mean_1h,n_1h"

    runs = list_runs(warehouse, model)
    assert [(r["run_id"], r["status"], r["step"]) for r in runs] == [
        (outcome.run_id, "completed", 4)
    ]
    shown = show_run(warehouse, outcome.run_id)
    assert [s["step"] for s in shown["steps"]] == [1, 2, 3, 4]
    assert shown["params"]["lr"] == "0.01"
    assert shown["lineage"]["dataset_sha256"] == outcome.artifacts["dataset"]
    assert shown["artifacts"]["bundle"] == outcome.artifacts["bundle"]


def test_the_retrain_worker_coalesces_requests_per_model(
    kafka: HeadwaterSettings,
    warehouse: ChdbWarehouse,
    unique: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="headwater")
    settings = _isolated(kafka, unique, tmp_path).model_copy(update={"retrain_min_rows": 50})
    model, fs = f"drifty-{unique}", f"fs-{unique}"
    insert_history(warehouse, model, fs, n=200)  # event times 1 000 000 .. 1 199 000
    bus = EventBus(settings)
    change = 1_100_000
    for n in range(3):
        request = RetrainRequest(
            request_id=f"rr-{n}",
            model=model,
            reason=f"drift {n}",
            requested_at_ms=n,
            since_ms=change if n == 1 else 0,
        )
        bus.send("retrain-requests", request)
    bus.send_bytes("retrain-requests", b"garbage", model.encode())
    bus.flush()
    worker = RetrainWorker(settings, warehouse=warehouse, epochs=2, feature_set=fs)
    thread = threading.Thread(target=worker.run, kwargs={"max_requests": 4, "idle_exit_s": 60})
    thread.start()
    thread.join(timeout=200)
    assert not thread.is_alive()

    # The first request starts a retrain; the two arriving meanwhile make one more.
    assert [r.retrain.request_ids for r in worker.results] == [["rr-0"], ["rr-1", "rr-2"]]
    assert worker.retrains.coalesced == 1
    assert all(r.error == "" for r in worker.results)
    state = replay_state(settings)
    assert [v.stage for v in state.versions(model)] == ["promoted", "canary"]
    assert state.champion(model) == 1
    assert state.version(model, 2).actor == "retrain-worker"
    # the retrain after the change trained on the rows after it, and the version says so
    span = state.version(model, 2).signature
    assert int(span["data_start_ms"]) >= change and span["rows"] == "100"
    assert int(state.version(model, 1).signature["data_start_ms"]) < change
    # an operator reads every step in the worker's log
    text = caplog.text
    assert f"retrain request rr-1 for {model}: drift 1 (train on rows from {change})" in text
    assert f"training {model} started: 100 rows, event time {change}" in text
    assert f"training {model} finished in" in text and "valid_loss=" in text
    assert f"registered {model}@2" in text
    assert f"handed {model}@2 to the canary (champion 1)" in text


def test_a_retrain_waits_for_rows_after_the_change_and_says_why_it_gave_up(
    warehouse: ChdbWarehouse, settings: HeadwaterSettings
) -> None:
    from headwater.trainers.errors import DatasetError
    from headwater.trainers.retrain_queue import Retrain

    future = 10**13  # no label is that late
    assert labelled_rows_since(warehouse, future) == 0
    impatient = settings.model_copy(update={"retrain_wait_s": 1.0, "retrain_min_rows": 10})
    worker = RetrainWorker(impatient, warehouse=warehouse)
    retrain = Retrain("m", ["r"], ["drift"], [], 0, since_ms=future)
    with pytest.raises(DatasetError, match="only 0 labelled rows after the change"):
        worker._wait_for_rows(warehouse, retrain)
