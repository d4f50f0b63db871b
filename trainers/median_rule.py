"""The median stopping rule: stop a trial whose objective at a step is worse than the median
of earlier trials' objectives at the same step (Google Vizier's rule, Optuna's MedianPruner).

It knows nothing of Kafka: it is told other trials' intermediate values and asked about one.

>>> rule = MedianStoppingRule(min_trials=2, warmup_steps=1)
>>> for trial, values in {1: [0.9, 0.5], 2: [0.8, 0.4], 3: [0.7, 0.3]}.items():
...     for step, value in enumerate(values, start=1):
...         rule.update(trial, step, value)
>>> rule.should_stop(2, 0.45), rule.should_stop(2, 0.35), rule.should_stop(1, 5.0)
(True, False, False)
"""

from __future__ import annotations

from typing import Literal

import numpy as np


class MedianStoppingRule:
    """Median of other trials' values at the same step; lower is better unless ``maximize``."""

    def __init__(
        self,
        min_trials: int = 3,
        warmup_steps: int = 1,
        direction: Literal["minimize", "maximize"] = "minimize",
    ) -> None:
        self.min_trials = min_trials
        self.warmup_steps = warmup_steps
        self.direction = direction
        self._values: dict[int, dict[int, float]] = {}  # step → trial → value

    def update(self, trial: int, step: int, value: float) -> None:
        if np.isfinite(value):
            self._values.setdefault(step, {})[trial] = value

    def median_at(self, step: int) -> float | None:
        others = self._values.get(step, {})
        if len(others) < self.min_trials:
            return None
        return float(np.median(list(others.values())))

    def should_stop(self, step: int, value: float) -> bool:
        """Whether a trial at ``value`` after ``step`` steps is worse than the median."""
        if step <= self.warmup_steps:
            return False
        median = self.median_at(step)
        if median is None:
            return False
        if not np.isfinite(value):
            return True
        return value > median if self.direction == "minimize" else value < median
