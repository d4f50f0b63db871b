"""Bayesian search over Kafka with a pool of trial workers, one of them killed mid-trial."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import cluster_metadata, ensure_topics, make_consumer
from headwater.schemas.models import Run
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.model_family import load_bundle
from headwater.trainers.search import (
    Objective,
    PriorTrial,
    SearchBudget,
    SearchResult,
    StudyDriver,
    make_sampler,
)
from headwater.trainers.search_space import default_space
from headwater.trainers.training import TrainConfig, Trainer
from headwater.trainers.trial_worker import TrialWorker, local_workers
from tests.trainers.search_fixtures import pid_of, tunable_task

pytestmark = pytest.mark.integration
EPOCHS = 3


def _isolated(kafka: HeadwaterSettings, unique: str, tmp_path: Path) -> HeadwaterSettings:
    settings = kafka.model_copy(
        update={"topic_prefix": f"hpo-{unique}-", "artifact_store": str(tmp_path / "store")}
    )
    ensure_topics(settings)
    return settings


def _kill_first_running_worker(settings: HeadwaterSettings, done: threading.Event) -> list[int]:
    """Watch ``runs``; SIGKILL the worker of the first trial that reports an epoch."""
    name = settings.topic("runs")
    consumer = make_consumer(settings, "kill-watch")
    partitions = cluster_metadata(settings).topics[name].partitions
    consumer.assign([TopicPartition(name, p, 0) for p in partitions])
    bus = EventBus(settings)
    pids: dict[str, int] = {}
    killed: list[int] = []
    try:
        while not done.is_set() and not killed:
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            _, fields = bus.codec.decode(message.value() or b"", Run.SCHEMA)
            event = Run.from_avro(fields)
            pid = pid_of(event.message)
            if event.status == "started" and pid is not None:
                pids[event.run_id] = pid
            elif event.status == "running" and event.run_id in pids:
                os.kill(pids[event.run_id], signal.SIGKILL)
                killed.append(pids[event.run_id])
    finally:
        consumer.close()
    return killed


@pytest.mark.slow
def test_search_beats_the_default_and_survives_a_killed_worker(
    kafka: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    settings = _isolated(kafka, unique, tmp_path)
    data = tunable_task()
    store = ArtifactStore.from_settings(settings)
    dataset = store.put_bytes(data.to_bytes())
    driver = StudyDriver(
        settings,
        EventBus(settings),
        model="tune",
        dataset_sha256=dataset,
        space=default_space(epochs=EPOCHS),
        budget=SearchBudget(trials=6, parallelism=2, trial_timeout_s=90, wall_time_s=240),
        seed=4,
    )
    results: list[SearchResult] = []
    done = threading.Event()
    with local_workers(settings, 2) as workers:

        def drive() -> None:
            results.append(driver.run())
            done.set()

        thread = threading.Thread(target=drive)
        thread.start()
        killed = _kill_first_running_worker(settings, done)
        thread.join(timeout=280)
    assert not thread.is_alive()
    assert killed and killed[0] in [w.pid for w in workers]
    result = results[0]
    assert len(result.outcomes) == 6
    assert result.count("completed") + result.count("pruned") + result.count("failed") == 6
    assert result.count("failed") == 0  # the killed worker's trial went to the other worker
    assert result.count("completed") >= 2
    assert result.best is not None
    default = Trainer(TrainConfig(epochs=EPOCHS), data).fit().metrics["valid_loss"]
    assert result.best.metrics["valid_loss"] < default
    bundle = load_bundle(store.get_bytes(result.best.artifacts["bundle"]))
    assert bundle.feature_names == data.feature_names
    assert bundle.metadata["run_id"] == result.best.run_id


@pytest.mark.slow
def test_multi_objective_warm_started_search(
    kafka: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    settings = _isolated(kafka, unique, tmp_path)
    store = ArtifactStore.from_settings(settings)
    dataset = store.put_bytes(tunable_task(300).to_bytes())
    prior = PriorTrial(
        {
            "width": 32,
            "depth": 2,
            "dropout": 0.1,
            "lr": 0.01,
            "weight_decay": 1e-4,
            "batch_size": 32,
        },
        (0.5, 1.0),
    )
    # a retrain's first trial tries the champion's parameters, whatever the sampler would draw
    champion = {**prior.params, "width": 17, "lr": 0.02, "batch_size": 64}
    driver = StudyDriver(
        settings,
        EventBus(settings),
        model="tune-mo",
        dataset_sha256=dataset,
        space=default_space(epochs=2),
        objectives=[Objective("valid_loss"), Objective("inference_ms_per_1k")],
        budget=SearchBudget(trials=3, parallelism=1, trial_timeout_s=90, wall_time_s=200),
        warm_start=[prior],
        first=champion,
    )
    with local_workers(settings, 1):
        result = driver.run()
    assert result.warm_started == 1
    assert result.count("completed") == 3
    first = min(result.outcomes, key=lambda o: o.number)
    assert {k: first.params[k] for k in champion} == champion
    assert result.best is not None and result.best.number in result.pareto
    assert not driver.prune  # median pruning applies to one objective only


def test_samplers_are_selectable() -> None:
    assert type(make_sampler("gp", 0)).__name__ == "GPSampler"
    assert type(make_sampler("tpe", 0)).__name__ == "TPESampler"
    assert type(make_sampler("cmaes", 0)).__name__ == "CmaEsSampler"


def test_a_trial_worker_started_for_a_process_stops_when_that_process_is_gone(
    kafka: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    settings = _isolated(kafka, unique, tmp_path)
    mine = TrialWorker(settings, idle_exit_s=600, parent_pid=os.getppid())
    orphan = TrialWorker(settings, idle_exit_s=600, parent_pid=os.getppid() + 1)  # not ours
    threads = [threading.Thread(target=w.run, daemon=True) for w in (mine, orphan)]
    for thread in threads:
        thread.start()
    threads[1].join(timeout=120)
    assert not threads[1].is_alive()  # its parent is not there: it stopped by itself
    assert threads[0].is_alive()  # its parent is: it serves on until told to stop
    mine.stop()
    threads[0].join(timeout=120)
    assert not threads[0].is_alive()
