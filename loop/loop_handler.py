"""The closed loop's handler: predictions, labels, model versions and alarms in; live metrics,
drift and quality alarms, retrain requests and canary decisions out. No Kafka here — the
:class:`~headwater.loop.agent_runner.AgentRunner` feeds it, and tests can feed it lists.

Per model version it keeps a :class:`DriftMonitor` over the champion's served features (against
the training reference of that version), ADWIN and Page–Hinkley on the champion's mistakes, and
per model a :class:`RetrainPolicy` and a :class:`CanaryController`. The registry's state is the
fold of ``model-versions`` (:class:`headwater.trainers.registry_state.RegistryState`).

A version is watched only on the events after its training data
(:class:`~headwater.loop.drift_monitor.VersionReference`): a backlog it scores when it starts
serving, or a replay, holds events it was trained on (or older ones), which say nothing about
how the world changed since — and which of them reach the first windows would depend on timing.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from headwater.core.settings import HeadwaterSettings
from headwater.loop.agent_runner import Output
from headwater.loop.canary import ACTOR as CANARY_ACTOR
from headwater.loop.canary import CanaryConfig, CanaryController, CanaryDecision
from headwater.loop.drift_monitor import (
    CategoricalReference,
    DriftMonitor,
    FeatureReference,
    VersionReference,
)
from headwater.loop.error_detectors import AdwinDetector, ErrorDetector, PageHinkleyDetector
from headwater.loop.label_join import LabelJoiner, Outcome
from headwater.loop.live_metrics import LiveQuality
from headwater.loop.retrain_policy import RetrainPolicy
from headwater.schemas.models import (
    DriftAlarm,
    EventModel,
    Label,
    Metric,
    ModelVersion,
    Prediction,
    RetrainRequest,
    Routing,
)
from headwater.trainers.errors import RegistryError
from headwater.trainers.registry_state import RegistryState

log = logging.getLogger(__name__)

References = Mapping[str, FeatureReference | CategoricalReference]
# a version's references: a mapping alone, or with the time its training data ends
ReferenceSource = Callable[[str, int, str], References | VersionReference | None]


@dataclass(frozen=True)
class LoopConfig:
    """How the loop watches: horizons, windows, calibration, policy and canary settings."""

    label_horizon_ms: int = 6 * 3_600_000
    drift_window: int = 500
    drift_alpha: float = 1e-4
    tumbling_ms: int = 60_000
    sliding: int = 500
    metrics_every: int = 100
    threshold: float = 0.5
    retrain_min_alarms: int = 3
    retrain_sustain_ms: int = 300_000
    retrain_cooldown_ms: int = 3_600_000
    retrain_max_requests: int = 3
    # A retrain after a change trains on a few thousand recent rows: a few trials find a good
    # network (the first is the champion's own), and each extra one delays the recovery.
    retrain_trials: int = 3
    canary: CanaryConfig = field(default_factory=CanaryConfig)

    @classmethod
    def from_settings(cls, settings: HeadwaterSettings) -> LoopConfig:
        """The policy and canary settings of ``settings``; the rest as by default.

        >>> from headwater.core.settings import HeadwaterSettings
        >>> config = LoopConfig.from_settings(HeadwaterSettings(retrain_cooldown_s=60))
        >>> config.retrain_cooldown_ms, config.canary.min_outcomes_per_step
        (60000, 100)
        """
        return cls(
            retrain_min_alarms=settings.retrain_min_alarms,
            retrain_sustain_ms=int(settings.retrain_sustain_s * 1000),
            retrain_cooldown_ms=int(settings.retrain_cooldown_s * 1000),
            retrain_max_requests=settings.retrain_max_requests,
            retrain_trials=settings.retrain_trials,
            canary=CanaryConfig(min_outcomes_per_step=settings.canary_min_outcomes_per_step),
        )


@dataclass
class _Watch:
    """What is watched for one model version."""

    drift: DriftMonitor | None
    errors: list[ErrorDetector]
    reference: VersionReference = field(default_factory=lambda: VersionReference({}))
    labelled: int = 0
    skipped: int = 0  # predictions of events the version was trained on (or older)
    # event times of the latest labelled outcomes: where a detector's change point falls
    outcome_times: deque[int] = field(default_factory=lambda: deque(maxlen=100_000))

    def change_point_ms(self, since_change: int) -> int:
        """The event time of the outcome ``since_change`` outcomes back (the change point)."""
        if not self.outcome_times:
            return 0
        back = min(max(since_change, 1), len(self.outcome_times))
        return self.outcome_times[-back]


@dataclass
class LoopCounts:
    alarms: int = 0
    metrics: int = 0
    retrain_requests: int = 0
    decisions: int = 0


class LoopHandler:
    """Wires the loop's statistics to its events; pure apart from the reference lookup."""

    topics: Sequence[str] = ("predictions", "labels", "model-versions", "drift")

    def __init__(
        self,
        references: ReferenceSource,
        config: LoopConfig | None = None,
        *,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.config = config or LoopConfig()
        self.references = references
        # Decisions and alarms are stamped with the time they are made (wall clock by default);
        # joins and windows run on the events' own time.
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.registry = RegistryState()
        self.joiner = LabelJoiner(self.config.label_horizon_ms)
        self.quality = LiveQuality(
            tumbling_ms=self.config.tumbling_ms,
            sliding=self.config.sliding,
            emit_every=self.config.metrics_every,
            threshold=self.config.threshold,
        )
        self.controllers: dict[str, CanaryController] = {}
        self.policies: dict[str, RetrainPolicy] = {}
        self._watches: dict[tuple[str, int], _Watch] = {}
        self._pending: list[ModelVersion] = []
        self.counts = LoopCounts()
        self.decisions: list[CanaryDecision] = []
        self.alarms: list[DriftAlarm] = []

    def not_watched(self) -> int:
        """Champion predictions of events a version was trained on (or older): not watched."""
        return sum(w.skipped for w in list(self._watches.values()))

    def drift_monitors(self) -> list[DriftMonitor]:
        """The drift monitor of every watched model version (read by the process's gauges)."""
        return [w.drift for w in list(self._watches.values()) if w.drift is not None]

    # -- events in --------------------------------------------------------------------------
    def handle(self, topic: str, event: EventModel) -> list[Output]:
        if isinstance(event, Prediction):
            return self._prediction(event)
        if isinstance(event, Label):
            return self._outcomes(self.joiner.add_label(event))
        if isinstance(event, ModelVersion):
            return self._model_version(event)
        if isinstance(event, DriftAlarm):
            return self._policy(event)
        return []

    def on_tick(self, now_ms: int) -> list[Output]:
        """After each batch: start trials of versions still only registered, check timeouts."""
        outputs: list[Output] = []
        pending, self._pending = self._pending, []
        for event in pending:
            try:
                stage = self.registry.version(event.model, event.version).stage
            except RegistryError:
                continue
            if event.action == "promoted":
                outputs += self._external_promotion(event)
                continue
            handed_over = event.action in ("canary", "shadow") and stage == event.action
            if stage == "registered" or handed_over:
                # a version someone else (the retrain worker, a person) put in canary is tried
                # the same way: the controller sets its weights and decides
                champion = self.registry.champion(event.model)
                registered = event.model_copy(update={"action": "registered"})
                controller = self._controller(event.model)
                if controller.candidate != event.version:
                    outputs += self._decisions(controller.on_registered(registered, champion))
        for controller in self.controllers.values():
            outputs += self._decisions(controller.tick(now_ms))
        for model, policy in self.policies.items():
            trying = self.controllers.get(model)
            busy = trying is not None and trying.candidate is not None
            asked = policy.tick(now_ms, busy)
            if isinstance(asked, RetrainRequest):
                outputs += self._request(asked)
            elif asked is not None:
                log.warning(
                    "%s cannot be fixed by retraining: %d retrain requests (the cap) and still "
                    "degraded; a person must look at it",
                    model,
                    int(asked.value),
                )
                outputs += self._alarms([asked])
        return outputs

    def _external_promotion(self, event: ModelVersion) -> list[Output]:
        """Promoted by someone else (the first version, a person): once the batch is folded
        and it is still the champion (not an old event of a replay), it serves everything."""
        controller = self._controller(event.model)
        if (
            self.registry.champion(event.model) != event.version
            or controller.candidate is not None
            or controller.champion == event.version
        ):
            return []
        controller.champion = event.version
        routing = Routing(
            model=event.model,
            weights={str(event.version): 1.0},
            reason=f"{event.model}@{event.version} promoted by {event.actor or 'someone'}",
            actor=CANARY_ACTOR,
            updated_at_ms=self.clock(),
        )
        return [("routing", routing)]

    def flush(self) -> list[Output]:
        """Close the open metric windows (at shutdown)."""
        metrics = self.quality.flush()
        self.counts.metrics += len(metrics)
        return [("metrics", m) for m in metrics]

    # -- predictions and outcomes -----------------------------------------------------------
    def _prediction(self, prediction: Prediction) -> list[Output]:
        outputs: list[Output] = []
        controller = self.controllers.get(prediction.model)
        if prediction.fallback and prediction.route == "canary" and controller is not None:
            candidate = controller.candidate
            if candidate is not None:
                why = prediction.fallback_reason or "fallback"
                outputs += self._decisions(controller.observe_failure(candidate, why, self.clock()))
        if prediction.route == "champion" and not prediction.fallback:
            watch = self._watch(prediction.model, prediction.version)
            if not watch.reference.watches(prediction.event_time_ms):
                watch.skipped += 1
            elif watch.drift is not None:
                alarms = watch.drift.update(prediction.features, self.clock())
                outputs += self._alarms(alarms)
        return outputs + self._outcomes(self.joiner.add_prediction(prediction))

    def _outcomes(self, outcomes: list[Outcome]) -> list[Output]:
        outputs: list[Output] = []
        for outcome in outcomes:
            metrics: list[Metric] = self.quality.update(outcome)
            self.counts.metrics += len(metrics)
            outputs += [("metrics", m) for m in metrics]
            p = outcome.prediction
            if p.route == "champion" and not p.fallback:
                outputs += self._errors(outcome)
            controller = self.controllers.get(p.model)
            if controller is not None:
                outputs += self._decisions(controller.observe(outcome, self.clock()))
        return outputs

    def _errors(self, outcome: Outcome) -> list[Output]:
        p = outcome.prediction
        watch = self._watch(p.model, p.version)
        if not watch.reference.watches(p.event_time_ms):
            return []  # an in-sample mistake rate is no baseline for the live one
        watch.labelled += 1
        watch.outcome_times.append(p.event_time_ms)
        mistake = float((p.output >= self.config.threshold) != (outcome.label.label > 0.5))
        alarms = []
        at = self.clock()
        for detector in watch.errors:
            if detector.update(mistake):
                alarms.append(
                    DriftAlarm(
                        alarm_id=f"concept:{p.model}@{p.version}/{detector.statistic}/{at}",
                        model=p.model,
                        version=p.version,
                        kind="concept",
                        statistic=detector.statistic,
                        value=detector.value,
                        threshold=detector.threshold,
                        window_size=detector.since_change,
                        # the change point and this outcome, in event time: a retrain
                        # trains on the rows from the change on
                        window_start_ms=watch.change_point_ms(detector.since_change),
                        window_end_ms=p.event_time_ms,
                        severity="critical",
                        detected_at_ms=at,
                    )
                )
        return self._alarms(alarms)

    def _watch(self, model: str, version: int) -> _Watch:
        watch = self._watches.get((model, version))
        if watch is None:
            try:
                sha256 = self.registry.version(model, version).artifact_sha256
            except RegistryError:
                sha256 = ""
            found = self.references(model, version, sha256)
            reference = (
                found
                if isinstance(found, VersionReference)
                else VersionReference(found if found is not None else {})
            )
            features = reference.features
            drift = (
                DriftMonitor(
                    model, version, features, self.config.drift_window, self.config.drift_alpha
                )
                if features
                else None
            )
            watch = _Watch(drift, [AdwinDetector(), PageHinkleyDetector()], reference)
            self._watches[(model, version)] = watch
        return watch

    # -- alarms, policy, registry, canary ---------------------------------------------------
    def _alarms(self, alarms: list[DriftAlarm]) -> list[Output]:
        outputs: list[Output] = []
        for alarm in alarms:
            self.counts.alarms += 1
            self.alarms.append(alarm)
            log.info(
                "alarm %s on %s@%d%s: %s %s = %.4g (threshold %.4g), %s",
                alarm.kind,
                alarm.model,
                alarm.version,
                f" feature {alarm.feature}" if alarm.feature else "",
                alarm.statistic,
                "value",
                alarm.value,
                alarm.threshold,
                alarm.severity,
            )
            outputs.append(("drift", alarm))
            outputs += self._policy(alarm)
        return outputs

    def _policy(self, alarm: DriftAlarm) -> list[Output]:
        champion = self.registry.champion(alarm.model)
        if champion is not None and alarm.version not in (0, champion):
            return []  # alarms about a version no longer serving don't retrain
        policy = self.policies.get(alarm.model)
        if policy is None:
            cfg = self.config
            policy = self.policies[alarm.model] = RetrainPolicy(
                alarm.model,
                min_alarms=cfg.retrain_min_alarms,
                sustain_ms=cfg.retrain_sustain_ms,
                cooldown_ms=cfg.retrain_cooldown_ms,
                max_requests=cfg.retrain_max_requests,
                trials=cfg.retrain_trials,
            )
        request = policy.observe(alarm)
        if request is None:
            return []
        return self._request(request)

    def _request(self, request: RetrainRequest) -> list[Output]:
        self.counts.retrain_requests += 1
        log.info(
            "retrain requested for %s (%s): %s; train on rows from %s",
            request.model,
            request.request_id,
            request.reason,
            request.since_ms or "the beginning",
        )
        return [("retrain-requests", request)]

    def _model_version(self, event: ModelVersion) -> list[Output]:
        try:
            self.registry.apply(event)
        except RegistryError:
            return []  # the registry's own fold reports illegal events; here they change nothing
        policy = self.policies.get(event.model)
        if policy is not None:
            policy.on_version(event.action, self.clock())
        if event.action == "registered":
            self._pending.append(event)  # decided after the batch, once replays caught up
        elif event.actor != CANARY_ACTOR and event.action in ("canary", "shadow"):
            self._pending.append(event)
        elif event.actor != CANARY_ACTOR and event.action == "promoted":
            self._pending.append(event)  # routed after the batch if it is still the champion
        return []

    def _controller(self, model: str) -> CanaryController:
        controller = self.controllers.get(model)
        if controller is None:
            controller = self.controllers[model] = CanaryController(model, self.config.canary)
        return controller

    def _decisions(self, decisions: list[CanaryDecision]) -> list[Output]:
        outputs: list[Output] = []
        for decision in decisions:
            self.counts.decisions += 1
            self.decisions.append(decision)
            event = decision.model_version
            evidence = ", ".join(f"{k}={v:.4g}" for k, v in sorted(event.metrics.items()))
            log.info(
                "canary %s %s@%d: %s; routing %s%s",
                decision.action,
                event.model,
                event.version,
                event.reason,
                decision.routing.weights,
                f"; evidence {evidence}" if evidence else "",
            )
            outputs += [("model-versions", decision.model_version), ("routing", decision.routing)]
        return outputs
