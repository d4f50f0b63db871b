"""A consumer of ``retrain-requests`` built on the trainers' public pieces: the point-in-time
training set from the warehouse, a small Bayesian search (Optuna TPE, ask and tell) of the
torch MLP's hyperparameters, each trial a real training run tracked on ``runs``, and the best
bundle stored and registered on ``model-versions`` — where the canary controller takes over.
The bundle records its training data's event-time span, from which the loop watches it.

``sabotage=True`` (the demo's ``--bad-candidate``) trains every trial on inverted labels: a real
model, honestly worse, that the canary must catch.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import optuna

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.infra.warehouse import Warehouse
from headwater.loop.agent_runner import Output
from headwater.schemas.models import EventModel, RetrainRequest
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.dataset import TrainingSet, training_span
from headwater.trainers.errors import DatasetError
from headwater.trainers.model_family import MLPConfig
from headwater.trainers.point_in_time import DatasetSpec, build_training_set
from headwater.trainers.registry import ModelRegistry, replay_state
from headwater.trainers.tracking import RunTracker, new_run_id
from headwater.trainers.training import TrainConfig, Trainer

ACTOR = "loop-retrainer"


@dataclass
class RetrainOutcome:
    request_id: str
    run_id: str
    version: int
    trials: int
    best_params: dict[str, float | int]
    metrics: dict[str, float] = field(default_factory=dict)


def sabotaged(data: TrainingSet) -> TrainingSet:
    """The same rows with every binary label inverted."""
    return TrainingSet(
        data.feature_names,
        data.train_x,
        1.0 - data.train_y,
        data.valid_x,
        1.0 - data.valid_y,
        {**data.lineage, "sabotage": "labels inverted"},
    )


class Retrainer:
    """Handles ``retrain-requests`` of one model: search, train, store, register."""

    topics: Sequence[str] = ("retrain-requests",)

    def __init__(
        self,
        settings: HeadwaterSettings,
        warehouse: Warehouse,
        *,
        model: str,
        feature_set: str,
        data_start_ms: Callable[[RetrainRequest], int],
        epochs: int = 60,
        batch_size: int = 256,
        seed: int = 0,
        sabotage: bool = False,
        min_rows: int = 2,
        wait_for_rows_s: float = 0.0,
        feature_names: tuple[str, ...] = (),
        data_end_ms: int = 0,
    ) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.model = model
        self.feature_set = feature_set
        self.data_start_ms = data_start_ms
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.sabotage = sabotage
        self.min_rows = min_rows
        self.wait_for_rows_s = wait_for_rows_s
        self.feature_names = feature_names  # empty: every feature the warehouse has
        self.data_end_ms = data_end_ms  # 0: up to now
        self.bus = EventBus(settings)
        self.store = ArtifactStore.from_settings(settings)
        self.outcomes: list[RetrainOutcome] = []
        self.failures: list[str] = []

    def handle(self, topic: str, event: EventModel) -> list[Output]:
        if isinstance(event, RetrainRequest) and event.model == self.model:
            self.retrain(event)
        return []

    def on_tick(self, now_ms: int) -> list[Output]:
        return []

    def _training_set(self, request: RetrainRequest) -> TrainingSet:
        """The labelled rows since the data start; a drift is noticed before many labels of
        the new world exist, so wait (up to ``wait_for_rows_s``) for ``min_rows`` of them."""
        deadline = time.monotonic() + self.wait_for_rows_s
        while True:
            spec = DatasetSpec(
                self.model,
                self.feature_set,
                start_ms=self.data_start_ms(request),
                end_ms=self.data_end_ms,
                feature_names=self.feature_names,
            )
            try:
                data = build_training_set(self.warehouse, spec)
                if data.rows >= self.min_rows or time.monotonic() >= deadline:
                    return data
            except DatasetError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(1.0)

    def retrain(self, request: RetrainRequest) -> RetrainOutcome:
        data = self._training_set(request)
        if self.sabotage:
            data = sabotaged(data)
        study = f"{self.model}-{request.request_id}"
        trials = max(request.trials, 1)
        best: tuple[float, str, TrainConfig, bytes, dict[str, float]] | None = None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            search = optuna.create_study(
                direction="maximize", sampler=optuna.samplers.TPESampler(seed=self.seed)
            )
        for number in range(trials):
            trial = search.ask()
            config = TrainConfig(
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=trial.suggest_float("lr", 3e-3, 5e-2, log=True),
                seed=self.seed + number,
                device="cpu",
                network=MLPConfig(
                    width=trial.suggest_categorical("width", [16, 32, 64]),
                    depth=trial.suggest_int("depth", 1, 2),
                ),
            )
            run_id = new_run_id("retrain")
            tracker = RunTracker(
                self.bus,
                run_id,
                self.model,
                kind="trial",
                study=study,
                trial_number=number,
                params=config.params(),
                lineage=data.lineage,
            )
            tracker.start(f"retrain request {request.request_id}: {request.reason}")
            result = Trainer(config, data, listener=tracker, progress=False).fit()
            # the loop watches the version on the events after its training data
            result.bundle.metadata.update(training_span(data.lineage))
            score = float(result.metrics.get("valid_auc", 0.0))
            artifact = result.bundle.to_bytes()
            sha = self.store.put_bytes(artifact)
            tracker.complete(result.metrics, {"bundle": sha})
            search.tell(trial, score)
            if best is None or score > best[0]:
                best = (score, run_id, config, artifact, dict(result.metrics))
        assert best is not None
        score, run_id, config, artifact, metrics = best
        registry = ModelRegistry(self.store, self.bus, replay_state(self.settings))
        state = registry.register(
            self.model,
            self.store.put_bytes(artifact),
            run_id=run_id,
            metrics=metrics,
            signature={"inputs": ",".join(data.feature_names), "output": "probability"},
            reason=f"retrain request {request.request_id} ({trials} trials, best valid_auc "
            f"{score:.3f}): {request.reason}"[:500],
            actor=ACTOR,
        )
        self.bus.flush()
        outcome = (
            RetrainOutcome(
                request.request_id, run_id, state.version, trials, config.params_numeric(), metrics
            )
            if hasattr(config, "params_numeric")
            else RetrainOutcome(
                request.request_id,
                run_id,
                state.version,
                trials,
                {k: v for k, v in config.params().items() if isinstance(v, int | float)},
                metrics,
            )
        )
        self.outcomes.append(outcome)
        return outcome
