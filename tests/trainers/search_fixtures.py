"""Helpers shared by the search tests: a task where tuning pays, and a pool of trial workers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from infra.settings import HeadwaterSettings
from tests.conftest import settings_env
from trainers.dataset import TrainingSet


def tunable_task(n: int = 600, seed: int = 1) -> TrainingSet:
    """A nonlinear task on which the default configuration (small learning rate, large
    batches, few epochs) underfits and a tuned one does much better."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = ((x[:, 0] * x[:, 1] > 0) ^ (x[:, 2] > 1.0)).astype(float)
    return TrainingSet.from_arrays(x, y, np.arange(n), ("a", "b", "c", "d"))


def worker_env(settings: HeadwaterSettings) -> dict[str, str]:
    env = settings_env(settings)
    env.update(
        HEADWATER_TOPIC_PREFIX=settings.topic_prefix,
        HEADWATER_ARTIFACT_STORE=settings.artifact_store,
        OMP_NUM_THREADS="1",
    )
    return env


@contextmanager
def worker_pool(settings: HeadwaterSettings, size: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``size`` trial-worker processes in one consumer group, stopped afterwards."""
    env = worker_env(settings)
    workers = [
        subprocess.Popen([sys.executable, "-m", "trainers.trial_worker"], env=env)
        for _ in range(size)
    ]
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


def pid_of(message: str) -> int | None:
    """The worker pid a trial's ``started`` event names (``worker pid=123 host=…``)."""
    for part in message.split():
        if part.startswith("pid="):
            return int(part[4:])
    return None


__all__ = ["os", "pid_of", "tunable_task", "worker_env", "worker_pool"]
