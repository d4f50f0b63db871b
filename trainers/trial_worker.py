"""A trial worker: one member of the consumer group that runs a study's trials.

Trials are records on ``trials``; every worker of the group gets a share of its partitions, so
N workers on N machines run N trials at once. A worker commits a trial's offset only after
reporting its result on ``runs``: a worker killed mid-trial leaves the trial uncommitted and the
group hands it to another worker, which resumes from the trial's last checkpoint (when it shares
``HEADWATER_HOME``) or starts it again. Undecodable records go to ``deadletter``.

Parameters named ``search.*`` steer the worker, not the network: ``search.objective`` (the
metric the median stopping rule watches) and ``search.prune`` (whether to apply it).

``python -m headwater.trainers.trial_worker`` runs one worker until stopped.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from confluent_kafka import KafkaError, KafkaException, Message

from headwater.core.errors import HeadwaterError, SchemaError
from headwater.core.logs import configure_logging
from headwater.core.settings import HeadwaterSettings, load_settings, settings_environment
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import admin_client, make_consumer
from headwater.infra.metrics import METRICS
from headwater.schemas.dead_letters import dead_letter
from headwater.schemas.models import ParamValue, Run, Trial
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.dataset import TrainingSet, training_span
from headwater.trainers.foreground import run_until_sigterm
from headwater.trainers.median_rule import MedianStoppingRule
from headwater.trainers.model_family import ModelBundle
from headwater.trainers.study_progress import StudyProgress
from headwater.trainers.topic_log import read_events
from headwater.trainers.tracking import RunTracker, code_revision
from headwater.trainers.training import TrainConfig, Trainer
from headwater.trainers.trial_budget import machine_budget

SEARCH_PREFIX = "search."
LATENCY_ROWS = 4096
log = logging.getLogger(__name__)


def worker_group(settings: HeadwaterSettings) -> str:
    """The consumer group of the trial workers of these settings."""
    return f"{settings.topic_prefix}headwater-trial-workers"


def trial_worker_count(settings: HeadwaterSettings) -> int:
    """How many trial workers are in the group now (at least 1: a search sends one trial at a
    time to workers it cannot see, which may yet join). When the broker cannot say in time
    (a busy group coordinator), the count the platform starts: ``trial_workers`` or this
    machine's trial budget."""
    group = worker_group(settings)
    futures = admin_client(settings).describe_consumer_groups(
        [group], request_timeout=settings.kafka_timeout_s
    )
    try:
        members = len(futures[group].result(timeout=settings.kafka_timeout_s).members)
    except (KafkaException, TimeoutError) as error:
        planned = settings.trial_workers
        if planned is None:
            planned = machine_budget(settings).workers
        log.warning(
            "trial workers of group %s not counted (%s); assuming the %d planned",
            group,
            str(error) or type(error).__name__,
            planned,
        )
        return max(planned, 1)
    return max(members, 1)


def trial_run_id(study: str, number: int) -> str:
    return f"{study}-t{number}"


def inference_ms_per_1k(bundle: ModelBundle, x: np.ndarray) -> float:
    """Milliseconds to score 1,000 rows (best of three), a latency objective."""
    rows = x if len(x) else np.zeros((1, len(bundle.feature_names)))
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        bundle.predict(rows)
        best = min(best, time.perf_counter() - began)
    return best * 1000.0 * 1000.0 / len(rows)


class _PruningListener:
    def __init__(self, tracker: RunTracker, rule: MedianStoppingRule | None, objective: str):
        self.tracker = tracker
        self.rule = rule
        self.objective = objective
        self.pruned_at = 0

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> bool:
        self.tracker.on_epoch(epoch, metrics)
        self.tracker.publisher.flush()
        value = metrics.get(self.objective, float("nan"))
        if self.rule is not None and self.rule.should_stop(epoch, value):
            self.pruned_at = epoch
            return False
        return True


@dataclass
class TrialWorker:
    """Runs trials from the group's partitions until :meth:`stop` is called."""

    settings: HeadwaterSettings
    max_trials: int | None = None
    idle_exit_s: float | None = None
    # The process that started this worker for itself (a retrain worker keeping it warm): when
    # it is gone, even killed, this worker stops too instead of serving on as an orphan.
    parent_pid: int | None = None
    trials_run: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _datasets: dict[str, TrainingSet] = field(default_factory=dict)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Consume and run trials; returns how many ran."""
        settings = self.settings
        bus = EventBus(settings)
        consumer = make_consumer(
            settings,
            worker_group(settings),
            **{"max.poll.interval.ms": 1_800_000, "session.timeout.ms": 10_000},
        )
        consumer.subscribe([settings.topic("trials")])
        last_work = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.max_trials is not None and self.trials_run >= self.max_trials:
                    break
                if self.parent_pid is not None and os.getppid() != self.parent_pid:
                    break
                message = consumer.poll(0.5)
                if message is None:
                    idle = time.monotonic() - last_work
                    if self.idle_exit_s is not None and idle > self.idle_exit_s:
                        break
                    continue
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        print(f"trial worker: {error.str()}", file=sys.stderr)
                    continue
                self._handle(message, bus)
                consumer.commit(message=message, asynchronous=False)
                last_work = time.monotonic()
        finally:
            consumer.close()
        return self.trials_run

    def _handle(self, message: Message, bus: EventBus) -> None:
        raw = message.value() or b""
        try:
            _, fields = bus.codec.decode(raw, Trial.SCHEMA)
            trial = Trial.from_avro(fields)
        except (SchemaError, ValueError) as error:
            letter = dead_letter(
                self.settings.topic("trials"),
                message.partition() or 0,
                message.offset() or 0,
                "undecodable_trial",
                str(error),
                message.key(),
                raw,
            )
            bus.send("deadletter", letter)
            bus.flush()
            METRICS.failures.labels(stage="trial-worker", reason="undecodable").inc()
            return
        began = time.monotonic()
        status = self.run_trial(trial, bus)
        self.trials_run += 1
        seconds = time.monotonic() - began
        METRICS.trials.labels(model=trial.model, status=status).inc()
        METRICS.trial_duration.labels(model=trial.model).observe(seconds)
        log.info(
            "trial %d of %s (%s): %s in %.1f s, %.1f s after it was sent",
            trial.trial_number,
            trial.study,
            trial.model,
            status,
            seconds,
            time.time() - trial.sent_at_ms / 1000,
        )

    def run_trial(self, trial: Trial, bus: EventBus) -> str:
        """Train one trial and report it on ``runs``; returns how it ended: ``completed``,
        ``pruned``, ``failed``, or ``duplicate`` (another worker had reported it)."""
        steering = {k: v for k, v in trial.params.items() if k.startswith(SEARCH_PREFIX)}
        params = {k: v for k, v in trial.params.items() if not k.startswith(SEARCH_PREFIX)}
        objective = str(steering.get("search.objective", "valid_loss"))
        progress = self._progress(trial, objective)
        if progress.finished(trial.trial_number):
            return "duplicate"  # another worker reported it (a redelivery after a rebalance)
        tracker = RunTracker(
            bus,
            trial_run_id(trial.study, trial.trial_number),
            trial.model,
            kind="trial",
            study=trial.study,
            trial_number=trial.trial_number,
            params=trial.params,
            lineage={"dataset_sha256": trial.dataset, "attempt": str(trial.attempt)},
            revision=code_revision(),
        )
        tracker.start(f"worker pid={os.getpid()} host={socket.gethostname()}")
        try:
            return self._train(trial, params, steering, objective, progress, tracker)
        except HeadwaterError as error:
            tracker.fail(f"{type(error).__name__}: {error}")
        except (RuntimeError, ValueError) as error:  # torch errors (e.g. out of memory)
            tracker.fail(f"{type(error).__name__}: {error}")
        return "failed"

    def _train(
        self,
        trial: Trial,
        params: dict[str, ParamValue],
        steering: dict[str, ParamValue],
        objective: str,
        progress: StudyProgress,
        tracker: RunTracker,
    ) -> str:
        store = ArtifactStore.from_settings(self.settings)
        data = self._dataset(store, trial.dataset)
        config = TrainConfig.from_params(params)
        rule = None
        if bool(steering.get("search.prune", True)):
            rule = MedianStoppingRule(min_trials=2, warmup_steps=1)
            for number, curve in progress.completed_curves(trial.trial_number).items():
                for step, value in curve.items():
                    rule.update(number, step, value)
        listener = _PruningListener(tracker, rule, objective)
        checkpoint = self.settings.home / "checkpoints" / trial.study / f"t{trial.trial_number}.pt"
        result = Trainer(config, data, checkpoint=checkpoint, listener=listener).fit()
        metrics = dict(result.metrics)
        if listener.pruned_at:
            tracker.pruned(metrics, f"median stopping rule at step {listener.pruned_at}")
            return "pruned"
        # A few thousand rows time the latency as well as all of them, at a fraction of the cost.
        sample = data.valid_x[:LATENCY_ROWS]
        metrics["inference_ms_per_1k"] = inference_ms_per_1k(result.bundle, sample)
        result.bundle.metadata.update(
            run_id=tracker.run_id, model=trial.model, dataset_sha256=trial.dataset
        )
        result.bundle.metadata.update(training_span(data.lineage))
        bundle_sha = store.put_bytes(result.bundle.to_bytes())
        tracker.complete(metrics, {"bundle": bundle_sha, "dataset": trial.dataset})
        checkpoint.unlink(missing_ok=True)
        return "completed"

    def _dataset(self, store: ArtifactStore, sha256: str) -> TrainingSet:
        if sha256 not in self._datasets:
            self._datasets[sha256] = TrainingSet.from_bytes(store.get_bytes(sha256))
        return self._datasets[sha256]

    def _progress(self, trial: Trial, objective: str) -> StudyProgress:
        progress = StudyProgress(trial.study, objective)
        events, _ = read_events(self.settings, "runs", Run)
        for _, event in events:
            progress.update(event)
        return progress


@contextmanager
def local_workers(
    settings: HeadwaterSettings, count: int | None = None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` local trial-worker processes for the duration of a search (None: as many as
    this machine takes, :func:`~headwater.trainers.trial_budget.machine_budget`), spread over
    its GPUs when it has some."""
    budget = machine_budget(settings, count)
    env = settings_environment(settings)
    env["OMP_NUM_THREADS"] = str(budget.threads)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    workers = []
    for i in range(budget.workers):
        child = dict(env)
        if budget.gpus:
            gpu = budget.gpus[i]
            child["CUDA_VISIBLE_DEVICES"] = ids[gpu] if gpu < len(ids) else str(gpu)
        command = [
            sys.executable,
            "-m",
            "headwater.trainers.trial_worker",
            "--parent",
            str(os.getpid()),
        ]
        workers.append(subprocess.Popen(command, env=child))
    try:
        yield workers
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def take_budget(settings: HeadwaterSettings) -> None:
    """This trial process's share of the machine: ``trial_threads`` torch threads and nice
    level ``trial_nice`` (a trial waits for the stream's processes, never the reverse)."""
    import torch

    torch.set_num_threads(settings.trial_threads)
    current = os.nice(0)
    if settings.trial_nice > current:
        os.nice(settings.trial_nice - current)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m headwater.trainers.trial_worker")
    parser.add_argument("--max-trials", type=int, default=None)
    parser.add_argument("--idle-exit", type=float, default=None, help="exit after N idle seconds")
    parser.add_argument("--parent", type=int, default=None, help="exit when this pid is gone")
    args = parser.parse_args(argv)
    configure_logging("trial_worker")
    settings = load_settings()
    take_budget(settings)
    worker = TrialWorker(settings, args.max_trials, args.idle_exit, args.parent)
    return run_until_sigterm(worker, settings, "trial worker")


if __name__ == "__main__":
    sys.exit(main())
