"""Helpers shared by the search tests: a task where tuning pays, and who ran a trial."""

from __future__ import annotations

import numpy as np

from headwater.trainers.dataset import TrainingSet


def tunable_task(n: int = 600, seed: int = 1) -> TrainingSet:
    """A nonlinear task on which the default configuration (small learning rate, large
    batches, few epochs) underfits and a tuned one does much better."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = ((x[:, 0] * x[:, 1] > 0) ^ (x[:, 2] > 1.0)).astype(float)
    return TrainingSet.from_arrays(x, y, np.arange(n), ("a", "b", "c", "d"))


def pid_of(message: str) -> int | None:
    """The worker pid a trial's ``started`` event names (``worker pid=123 host=…``)."""
    for part in message.split():
        if part.startswith("pid="):
            return int(part[4:])
    return None
