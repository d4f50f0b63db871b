"""What the ``runs`` log says about one study: each trial's latest status and its curve.

A pure fold of :class:`~headwater.schemas.models.Run` events, used by trial workers (to skip trials
another worker already finished and to apply the median stopping rule) and testable with a
list of events.

>>> from headwater.schemas.models import Run
>>> progress = StudyProgress("s", "valid_loss")
>>> progress.update(Run(run_id="s-t0", kind="trial", model="m", study="s", trial_number=0,
...     status="running", step=1, metrics={"valid_loss": 0.4}, event_time_ms=1))
>>> progress.update(Run(run_id="s-t0", kind="trial", model="m", study="s", trial_number=0,
...     status="completed", step=1, event_time_ms=2))
>>> progress.finished(0), progress.curves[0]
(True, {1: 0.4})
"""

from __future__ import annotations

from headwater.schemas.models import Run

FINAL = ("completed", "pruned")  # a failed trial may be retried; these never run again


class StudyProgress:
    """The trials of ``study`` as their ``runs`` events tell them."""

    def __init__(self, study: str, objective: str) -> None:
        self.study = study
        self.objective = objective
        self.status: dict[int, str] = {}
        self.curves: dict[int, dict[int, float]] = {}

    def update(self, event: Run) -> None:
        if event.study != self.study or event.kind != "trial" or event.trial_number < 0:
            return
        number = event.trial_number
        if self.status.get(number) not in FINAL:
            self.status[number] = event.status
        value = event.metrics.get(self.objective)
        if event.status == "running" and value is not None:
            self.curves.setdefault(number, {})[event.step] = value

    def finished(self, trial_number: int) -> bool:
        return self.status.get(trial_number) in FINAL

    def completed_curves(self, exclude: int = -1) -> dict[int, dict[int, float]]:
        """Curves of the completed trials other than ``exclude``."""
        return {
            n: curve
            for n, curve in self.curves.items()
            if n != exclude and self.status.get(n) == "completed"
        }
