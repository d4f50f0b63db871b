"""What ``headwater demo`` watches: a pure handler over the platform's topics, read as any user
could read them, that keeps the timeline (first drift alarm, retrain request, candidate, canary
steps, decision) and the quality of answered predictions in three phases — before the drift,
after it, after the decision.

Phases are read from the demo's event ids (``tx-<seed>-<index>``) and the decision's time, so
quality is measured on the events the platform really scored, joined to their real labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from headwater.loop.agent_runner import Output
from headwater.loop.label_join import LabelJoiner, Outcome
from headwater.loop.quality import classification_metrics
from headwater.schemas.models import (
    DeadLetter,
    DriftAlarm,
    EventModel,
    Label,
    ModelVersion,
    Prediction,
    RetrainRequest,
    Routing,
    Run,
)

PHASES = ("before_drift", "after_drift", "after_decision")


def event_index(request_id: str) -> int:
    """The generator's index of an event from its id (``tx-<seed>-<index>``), or -1."""
    tail = request_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


@dataclass
class Timeline:
    first_alarm_ms: int | None = None
    first_alarm_events: int | None = None
    first_alarm: DriftAlarm | None = None
    retrain_request: RetrainRequest | None = None
    retrain_request_ms: int | None = None
    candidate: ModelVersion | None = None
    candidate_ms: int | None = None
    canary_steps: list[float] = field(default_factory=list)
    decision: ModelVersion | None = None
    decision_ms: int | None = None
    decision_events: int | None = None  # transactions produced when the decision was seen
    routings: list[Routing] = field(default_factory=list)
    # the retrain's stages, by the times its own events carry (``runs``, ``model-versions``)
    run_started_ms: int | None = None
    first_trial_ms: int | None = None
    last_trial_ms: int | None = None

    def retrain_stages(self) -> dict[str, float | None]:
        """Seconds of each stage from the retrain request to the candidate's registration:
        to the training run's start (the dataset), to the first trial's start (trial workers
        ready), the trials, and from the last trial to the registration."""
        marks = [
            self.retrain_request.requested_at_ms if self.retrain_request else None,
            self.run_started_ms,
            self.first_trial_ms,
            self.last_trial_ms,
            self.candidate.event_time_ms if self.candidate else None,
        ]
        names = ("to_run_start", "to_first_trial", "trials", "to_registration")
        return {
            name: None if a is None or b is None else round((b - a) / 1000, 3)
            for name, a, b in zip(names, marks, marks[1:], strict=False)
        }


class DemoObserver:
    """Records the loop's visible steps and the live quality per phase."""

    topics: Sequence[str] = (
        "predictions",
        "labels",
        "drift",
        "retrain-requests",
        "model-versions",
        "routing",
        "deadletter",
        "runs",
    )

    def __init__(
        self,
        model: str,
        drift_at: int,
        produced: Callable[[], int],
        clock: Callable[[], int],
        horizon_ms: int = 6 * 3_600_000,
    ) -> None:
        self.model = model
        self.drift_at = drift_at
        self.produced = produced
        self.clock = clock
        self.timeline = Timeline()
        self.joiner = LabelJoiner(horizon_ms)
        self.answered: set[str] = set()
        self.predictions = 0
        self.labels = 0
        self.deadletters = 0
        self.champion: int | None = None
        self.seen: Counter[str] = Counter()
        self.alarms_before_drift = 0
        self.skew_alarms = 0
        self._outcomes: dict[str, list[tuple[float, float]]] = {p: [] for p in PHASES}

    def handle(self, topic: str, event: EventModel) -> list[Output]:
        self.seen[topic] += 1
        if isinstance(event, Prediction) and event.model == self.model:
            self.predictions += 1
            if event.route != "shadow":
                self.answered.add(event.request_id)
            self._record(self.joiner.add_prediction(event))
        elif isinstance(event, Label):
            self.labels += 1
            self._record(self.joiner.add_label(event))
        elif isinstance(event, DriftAlarm) and event.model == self.model:
            self._alarm(event)
        elif isinstance(event, RetrainRequest) and self.timeline.retrain_request is None:
            # topics are read side by side: the request may be seen before its alarm
            if event.model == self.model and self.produced() > self.drift_at:
                self.timeline.retrain_request = event
                self.timeline.retrain_request_ms = self.clock()
        elif isinstance(event, ModelVersion) and event.model == self.model:
            self._model_version(event)
        elif isinstance(event, Routing) and event.model == self.model:
            self.timeline.routings.append(event)
        elif isinstance(event, DeadLetter):
            self.deadletters += 1
        elif isinstance(event, Run) and event.model == self.model:
            self._run(event)
        return []

    def on_tick(self, now_ms: int) -> list[Output]:
        return []

    def _alarm(self, alarm: DriftAlarm) -> None:
        timeline = self.timeline
        if alarm.kind == "skew":
            self.skew_alarms += 1
            return
        if self.produced() <= self.drift_at:
            self.alarms_before_drift += 1  # the stream was stationary: a false alarm
            return
        if timeline.first_alarm is not None:
            return
        timeline.first_alarm, timeline.first_alarm_ms = alarm, self.clock()
        timeline.first_alarm_events = self.produced()

    def _run(self, run: Run) -> None:
        """The retrain's training run and trials, between its request and its candidate."""
        t = self.timeline
        if t.retrain_request is None or t.candidate is not None:
            return
        if run.kind == "run" and run.status == "started" and t.run_started_ms is None:
            t.run_started_ms = run.event_time_ms
        elif run.kind == "trial" and t.run_started_ms is not None:
            if run.status == "started" and t.first_trial_ms is None:
                t.first_trial_ms = run.event_time_ms
            elif run.status in ("completed", "pruned", "failed"):
                t.last_trial_ms = max(t.last_trial_ms or 0, run.event_time_ms)

    def _model_version(self, event: ModelVersion) -> None:
        timeline = self.timeline
        if event.action == "promoted" and timeline.candidate is None:
            self.champion = event.version  # the bootstrap version
            return
        if event.action == "registered":
            # the first registration once a champion serves: the retrain's answer to the drift
            # (or the operator's model with --bad-candidate), whatever number it was given
            if timeline.candidate is None and self.champion is not None:
                timeline.candidate, timeline.candidate_ms = event, self.clock()
            return
        candidate = timeline.candidate
        if candidate is None or event.version != candidate.version or timeline.decision:
            return
        if event.action == "canary" and "weight" in event.metrics:
            # the canary controller's steps carry their weight; the hand-over into canary (by
            # the retrain worker or an operator) does not
            timeline.canary_steps.append(event.metrics["weight"])
        elif event.action in ("promoted", "rolled_back"):
            if event.action == "promoted":
                timeline.canary_steps.append(1.0)
            timeline.decision, timeline.decision_ms = event, self.clock()
            timeline.decision_events = self.produced()

    def _record(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            p = outcome.prediction
            if p.route == "shadow" or p.version == 0:
                continue  # quality of what answered users, once a model was serving
            self._outcomes[self._phase(p)].append((outcome.label.label, p.output))

    def _phase(self, prediction: Prediction) -> str:
        decided = self.timeline.decision_ms
        if decided is not None and prediction.served_at_ms >= decided:
            return "after_decision"
        if event_index(prediction.request_id) >= self.drift_at:
            return "after_drift"
        return "before_drift"

    def quality(self) -> dict[str, dict[str, float]]:
        result = {}
        for phase, pairs in self._outcomes.items():
            if not pairs:
                result[phase] = {"count": 0.0}
                continue
            y = np.asarray([label for label, _ in pairs])
            p = np.asarray([output for _, output in pairs])
            metrics = classification_metrics(y, p)
            result[phase] = {"count": float(len(pairs)), **metrics}
        return result
