"""The canary controller: a new version earns traffic step by step on live labelled outcomes,
or is rolled back — a pure decision object; :mod:`headwater.loop.agents` wires it to topics.

On a registered version the controller routes ``steps[0]`` of the traffic to it (or, with
``shadow_first``, lets it score every request in shadow without answering anyone). Each labelled
outcome updates an always-valid sequential test (:class:`~headwater.loop.sequential_test.
MeanComparison`) of the per-example loss (Brier, or squared error for regression) of candidate
against champion:

* significantly worse (mSPRT against "no difference", Λ ≥ 1/α, difference > 0) → rolled back;
* not worse by more than ``margin`` (mSPRT against "worse by margin", difference < margin),
  with at least ``min_outcomes_per_step`` new candidate outcomes at this step → next step; past
  the last step below 1.0 → promoted;
* ``max_errors`` failed predictions (errors, timeouts: serving's fallbacks) → rolled back at
  once, no statistics needed; no decision within ``max_duration_ms`` or ``max_outcomes`` →
  rolled back as inconclusive.

Every decision is a :class:`CanaryDecision`: a ``model-versions`` event and a ``routing`` event,
both carrying the evidence.

>>> from headwater.schemas.models import ModelVersion
>>> controller = CanaryController("fraud")
>>> registered = ModelVersion(model="fraud", version=2, action="registered", event_time_ms=5)
>>> [(d.action, d.routing.weights) for d in controller.on_registered(registered, champion=1)]
[('canary', {'1': 0.9, '2': 0.1})]
>>> failing = [controller.observe_failure(2, "timeout", now_ms=10 + i) for i in range(3)]
>>> [(d.action, d.routing.weights, d.model_version.reason) for d in failing[-1]]
[('rolled_back', {'1': 1.0}, 'canary fraud@2 failed 3 predictions (last: timeout)')]
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from headwater.loop.label_join import Outcome
from headwater.loop.quality import Task, example_loss
from headwater.loop.sequential_test import MeanComparison
from headwater.schemas.models import ModelVersion, Routing

Action = Literal["shadow", "canary", "promoted", "rolled_back"]
ACTOR = "canary-controller"
# Outcomes each side needs before the variance estimates mean anything.
MIN_SIDE = 30


@dataclass(frozen=True)
class CanaryConfig:
    steps: tuple[float, ...] = (0.10, 0.25, 0.50, 1.0)
    alpha: float = 0.05
    margin: float = 0.005
    tau: float = 0.05
    min_outcomes_per_step: int = 100
    max_outcomes: int = 20_000
    max_errors: int = 3
    max_duration_ms: int = 6 * 3_600_000
    shadow_first: bool = False
    task: Task = "classification"

    def __post_init__(self) -> None:
        if not self.steps or list(self.steps) != sorted(self.steps) or self.steps[-1] != 1.0:
            raise ValueError(f"canary steps must rise to 1.0, got {self.steps}")


@dataclass(frozen=True)
class CanaryDecision:
    action: Action
    model_version: ModelVersion
    routing: Routing


@dataclass
class _Trial:
    candidate: int
    champion: int
    started_ms: int
    step: int  # -1 while in shadow
    comparison: MeanComparison
    step_outcomes: int = 0
    errors: int = 0
    weights_taken: list[float] = field(default_factory=list)


class CanaryController:
    """Decides, for one model, how much traffic a candidate version gets."""

    def __init__(self, model: str, config: CanaryConfig | None = None) -> None:
        self.model = model
        self.config = config or CanaryConfig()
        self.champion: int | None = None
        self._trial: _Trial | None = None
        self._queue: deque[ModelVersion] = deque()
        self.history: list[CanaryDecision] = []

    @property
    def candidate(self) -> int | None:
        return self._trial.candidate if self._trial else None

    @property
    def weights_taken(self) -> list[float]:
        return list(self._trial.weights_taken) if self._trial else []

    def on_registered(self, event: ModelVersion, champion: int | None) -> list[CanaryDecision]:
        """A version was registered: start its trial (or queue it behind the running one)."""
        if event.model != self.model or event.action != "registered":
            return []
        if champion is not None:
            self.champion = champion
        if self._trial is not None:
            self._queue.append(event)
            return []
        now = event.event_time_ms
        if self.champion is None:
            self.champion = event.version
            return self._decide(
                "promoted",
                event.version,
                {event.version: 1.0},
                [],
                now,
                "no champion yet: the first version serves all traffic",
                {},
            )
        cfg = self.config
        self._trial = _Trial(
            event.version,
            self.champion,
            now,
            -1 if cfg.shadow_first else 0,
            MeanComparison(tau=cfg.tau),
        )
        if cfg.shadow_first:
            return self._decide(
                "shadow",
                event.version,
                {self.champion: 1.0},
                [event.version],
                now,
                "new version: scoring in shadow first",
                {},
            )
        return self._enter_step(0, now, "new version: first canary step")

    def observe(self, outcome: Outcome, now_ms: int | None = None) -> list[CanaryDecision]:
        """One labelled outcome of champion or candidate; decisions are stamped ``now_ms``
        (default: when the outcome became known)."""
        trial, p = self._trial, outcome.prediction
        if trial is None or p.model != self.model or p.fallback:
            return []
        loss = example_loss(self.config.task, outcome.label.label, p.output)
        if p.version == trial.candidate and p.route in ("canary", "shadow"):
            trial.comparison.update_b(loss)
            trial.step_outcomes += 1
        elif p.version == trial.champion and p.route == "champion":
            trial.comparison.update_a(loss)
        else:
            return []
        known = max(p.event_time_ms, outcome.label.labeled_at_ms)
        return self._evaluate(known if now_ms is None else now_ms)

    def observe_failure(self, version: int, reason: str, now_ms: int) -> list[CanaryDecision]:
        """A prediction of ``version`` failed (error, timeout): the candidate's third ends it."""
        trial = self._trial
        if trial is None or version != trial.candidate:
            return []
        trial.errors += 1
        if trial.errors < self.config.max_errors:
            return []
        return self._rollback(
            now_ms,
            f"canary {self.model}@{version} failed {trial.errors} predictions (last: {reason})",
        )

    def tick(self, now_ms: int) -> list[CanaryDecision]:
        """Time passes: a trial that took too long is rolled back as inconclusive."""
        trial = self._trial
        if trial is None or now_ms - trial.started_ms < self.config.max_duration_ms:
            return []
        return self._rollback(now_ms, f"no decision within {self.config.max_duration_ms} ms")

    def _evaluate(self, now: int) -> list[CanaryDecision]:
        trial, cfg = self._trial, self.config
        assert trial is not None
        test = trial.comparison
        if min(test.n_a, test.n_b) < MIN_SIDE:
            return []
        bar = 1.0 / cfg.alpha
        if test.difference > 0 and test.likelihood_ratio(0.0) >= bar:
            return self._rollback(now, "candidate significantly worse than champion")
        if (
            trial.step_outcomes >= cfg.min_outcomes_per_step
            and test.difference < cfg.margin
            and test.likelihood_ratio(cfg.margin) >= bar
        ):
            return self._enter_step(trial.step + 1, now, "candidate not worse than champion")
        if test.n_b >= cfg.max_outcomes:
            return self._rollback(now, f"inconclusive after {test.n_b} outcomes")
        return []

    def _enter_step(self, step: int, now: int, why: str) -> list[CanaryDecision]:
        trial = self._trial
        assert trial is not None
        weight = self.config.steps[step]
        trial.step, trial.step_outcomes = step, 0
        trial.weights_taken.append(weight)
        if weight >= 1.0:
            self.champion = trial.candidate
            decisions = self._decide(
                "promoted",
                trial.candidate,
                {trial.candidate: 1.0},
                [],
                now,
                f"{why}: promoted",
                self._evidence(trial, weight),
            )
            return decisions + self._finish(now)
        weights = {trial.champion: 1.0 - weight, trial.candidate: weight}
        return self._decide(
            "canary",
            trial.candidate,
            weights,
            [],
            now,
            f"{why}: canary weight {weight:g}",
            self._evidence(trial, weight),
        )

    def _rollback(self, now: int, why: str) -> list[CanaryDecision]:
        trial = self._trial
        assert trial is not None
        decisions = self._decide(
            "rolled_back",
            trial.candidate,
            {trial.champion: 1.0},
            [],
            now,
            why,
            self._evidence(trial, 0.0),
        )
        return decisions + self._finish(now)

    def _finish(self, now: int) -> list[CanaryDecision]:
        self._trial = None
        if not self._queue:
            return []
        # the champion is the one this controller just decided, not the one known at queueing
        event = self._queue.popleft()
        return self.on_registered(event.model_copy(update={"event_time_ms": now}), None)

    def _evidence(self, trial: _Trial, weight: float) -> dict[str, float]:
        test = trial.comparison
        return {
            "weight": weight,
            "candidate_outcomes": float(test.n_b),
            "champion_outcomes": float(test.n_a),
            "candidate_loss": test.mean_b,
            "champion_loss": test.mean_a,
            "difference": test.difference,
            "evidence_worse": test.likelihood_ratio(0.0),
            "evidence_not_worse": test.likelihood_ratio(self.config.margin),
            "evidence_bar": 1.0 / self.config.alpha,
            "errors": float(trial.errors),
        }

    def _decide(
        self,
        action: Action,
        version: int,
        weights: dict[int, float],
        shadows: list[int],
        now: int,
        reason: str,
        evidence: dict[str, float],
    ) -> list[CanaryDecision]:
        decision = CanaryDecision(
            action,
            ModelVersion(
                model=self.model,
                version=version,
                action=action,
                metrics=evidence,
                reason=reason,
                actor=ACTOR,
                event_time_ms=now,
            ),
            Routing(
                model=self.model,
                weights={str(v): w for v, w in sorted(weights.items())},
                shadows=shadows,
                reason=f"{self.model}@{version} {action}: {reason}",
                actor=ACTOR,
                updated_at_ms=now,
            ),
        )
        self.history.append(decision)
        return [decision]
