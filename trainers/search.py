"""Bayesian hyperparameter search over Kafka: Optuna's ask-and-tell, trials run by a worker pool.

The driver asks Optuna for a trial, sends it as a record on ``trials`` (keyed by study and trial
number, so trials spread over the partitions and the workers of the group), and listens on
``runs`` for the workers' reports: intermediate values are reported to the trial, a completed
trial is told its objective value(s), a pruned one is told it was pruned. A trial that fails or
goes silent longer than ``trial_timeout_s`` is sent again (``attempt`` + 1) until
``max_attempts``, then told it failed; the study goes on either way. The budget is a number of
trials and a wall time. Earlier completed trials can warm-start the sampler.
"""

from __future__ import annotations

import importlib.util
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
from confluent_kafka import Consumer, KafkaError, TopicPartition
from optuna.trial import TrialState

from headwater.core.errors import SchemaError
from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import cluster_metadata, make_consumer
from headwater.schemas.models import ParamValue, Run, Trial
from headwater.trainers.errors import SearchError
from headwater.trainers.search_space import SearchSpace
from headwater.trainers.tracking import EventPublisher
from headwater.trainers.trial_worker import trial_run_id

SamplerName = Literal["tpe", "gp", "cmaes", "random"]
Direction = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Objective:
    metric: str = "valid_loss"
    direction: Direction = "minimize"


@dataclass(frozen=True)
class SearchBudget:
    trials: int = 8
    wall_time_s: float = 1800.0
    parallelism: int = 2
    trial_timeout_s: float = 300.0
    max_attempts: int = 2


@dataclass(frozen=True)
class PriorTrial:
    """A finished trial of an earlier study, to warm-start the sampler."""

    params: dict[str, ParamValue]
    values: tuple[float, ...]


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    state: Literal["completed", "pruned", "failed"]
    params: dict[str, ParamValue]
    metrics: dict[str, float]
    artifacts: dict[str, str]
    run_id: str
    attempts: int
    message: str = ""


@dataclass(frozen=True)
class SearchResult:
    study: str
    sampler: str
    outcomes: list[TrialOutcome]
    best: TrialOutcome | None
    pareto: list[int]
    warm_started: int

    def count(self, state: str) -> int:
        return sum(o.state == state for o in self.outcomes)


def make_sampler(name: SamplerName, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler called ``name``; CMA-ES needs the ``cmaes`` package."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=4)
    if importlib.util.find_spec("cmaes") is None:
        raise SearchError(
            "sampler 'cmaes' needs the 'cmaes' package (pip install cmaes); "
            "choose 'tpe', 'gp' or 'random' meanwhile"
        )
    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=4)


@dataclass
class _InFlight:
    trial: optuna.trial.Trial
    params: dict[str, ParamValue]
    attempt: int
    last_heard: float
    reported: set[int] = field(default_factory=set)


class StudyDriver:
    """Runs one study: asks, sends, listens, tells."""

    def __init__(
        self,
        settings: HeadwaterSettings,
        bus: EventBus,
        *,
        model: str,
        dataset_sha256: str,
        space: SearchSpace,
        objectives: Sequence[Objective] = (Objective(),),
        budget: SearchBudget | None = None,
        sampler: SamplerName = "tpe",
        seed: int = 0,
        study: str = "",
        prune: bool = True,
        warm_start: Sequence[PriorTrial] = (),
        first: Mapping[str, ParamValue] | None = None,
        recorder: EventPublisher | None = None,
    ) -> None:
        if not objectives:
            raise SearchError("a study needs at least one objective")
        self.settings = settings
        self.bus = bus
        self.model = model
        self.dataset = dataset_sha256
        self.space = space
        self.objectives = tuple(objectives)
        self.budget = budget or SearchBudget()
        self.sampler = sampler
        self.seed = seed
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.study_name = study or f"{model}-{stamp}-{uuid.uuid4().hex[:6]}"
        self.prune = prune and len(self.objectives) == 1
        self.warm_start = list(warm_start)
        # Parameters the first trial tries (a champion's, in a retrain): a few trials then
        # include one known to suit the domain, whatever the sampler draws.
        self.first = {k: v for k, v in (first or {}).items() if k in space.distributions}
        self.recorder = recorder
        self._in_flight: dict[int, _InFlight] = {}
        self._outcomes: dict[int, TrialOutcome] = {}

    def run(self) -> SearchResult:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = optuna.create_study(
                study_name=self.study_name,
                directions=[o.direction for o in self.objectives],
                sampler=make_sampler(self.sampler, self.seed),
            )
            warmed = self._warm(study)
            if len(self.first) == len(self.space.distributions):
                study.enqueue_trial(dict(self.first))
            consumer = self._runs_consumer()
            try:
                self._loop(study, consumer)
            finally:
                consumer.close()
                if self.recorder is not None:
                    self.recorder.flush()
        return self._result(warmed)

    def _warm(self, study: optuna.Study) -> int:
        added = 0
        for prior in self.warm_start:
            params = {k: v for k, v in prior.params.items() if k in self.space.distributions}
            if set(params) != set(self.space.distributions):
                continue
            try:
                trial = optuna.trial.create_trial(
                    params=params,
                    distributions=self.space.distributions,
                    values=list(prior.values[: len(self.objectives)]),
                )
                study.add_trial(trial)
                added += 1
            except ValueError:
                continue  # a prior trial outside this space: skip it, the search still runs
        return added

    def _runs_consumer(self) -> Consumer:
        """Assigned at the end of ``runs`` before any trial is sent, so no report is missed."""
        name = self.settings.topic("runs")
        topic = cluster_metadata(self.settings).topics.get(name)
        if topic is None:
            raise SearchError(f"topic {name} does not exist; run `headwater up` first")
        consumer = make_consumer(self.settings, f"headwater-study-{self.study_name}")
        assignment = []
        for partition in topic.partitions:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(name, partition), timeout=self.settings.kafka_timeout_s
            )
            assignment.append(TopicPartition(name, partition, high))
        consumer.assign(assignment)
        return consumer

    def _loop(self, study: optuna.Study, consumer: Consumer) -> None:
        budget = self.budget
        deadline = time.monotonic() + budget.wall_time_s
        asked = 0
        while True:
            now = time.monotonic()
            while (
                len(self._in_flight) < budget.parallelism
                and asked < budget.trials
                and now < deadline
            ):
                self._ask_and_send(study)
                asked += 1
            if not self._in_flight:
                return
            if now > deadline + budget.trial_timeout_s:
                for number in list(self._in_flight):
                    self._fail(study, number, "the study's wall-time budget ran out")
                return
            message = consumer.poll(0.5)
            if message is not None:
                error = message.error()
                if error is None:
                    self._on_record(study, message.value() or b"")
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise SearchError(f"reading runs: {error.str()}")
            self._check_silence(study)

    def _ask_and_send(self, study: optuna.Study) -> None:
        trial = study.ask(self.space.distributions)
        params = self.space.params_of(trial.params)
        params["search.objective"] = self.objectives[0].metric
        params["search.prune"] = self.prune
        self._in_flight[trial.number] = _InFlight(trial, params, 0, time.monotonic())
        self._send(trial.number, params, 0)

    def _send(self, number: int, params: dict[str, ParamValue], attempt: int) -> None:
        record = Trial(
            study=self.study_name,
            trial_number=number,
            model=self.model,
            params=params,
            dataset=self.dataset,
            attempt=attempt,
            sent_at_ms=int(time.time() * 1000),
        )
        # Keyed by study and number (not by study alone) so trials spread over partitions.
        key = f"{self.study_name}#{number}"
        self.bus.send_record("trials", Trial.SCHEMA, record.to_avro(), key)
        self.bus.flush()

    def _on_record(self, study: optuna.Study, value: bytes) -> None:
        try:
            _, fields = self.bus.codec.decode(value, Run.SCHEMA)
            event = Run.from_avro(fields)
        except (SchemaError, ValueError):
            return  # not ours to judge: the sink dead-letters undecodable records of runs
        if event.study != self.study_name or event.kind != "trial":
            return
        if self.recorder is not None:
            self.recorder.send("runs", event)
        flight = self._in_flight.get(event.trial_number)
        if flight is None:
            return  # a duplicate report of a trial already told
        flight.last_heard = time.monotonic()
        if event.status == "running":
            self._report(flight, event)
        elif event.status == "completed":
            self._complete(study, flight, event)
        elif event.status == "pruned":
            study.tell(flight.trial, state=TrialState.PRUNED)
            self._finish(flight, "pruned", event)
        elif event.status == "failed":
            self._retry_or_fail(study, event.trial_number, event.message)

    def _report(self, flight: _InFlight, event: Run) -> None:
        value = event.metrics.get(self.objectives[0].metric)
        if len(self.objectives) == 1 and value is not None and event.step not in flight.reported:
            flight.trial.report(value, event.step)
            flight.reported.add(event.step)

    def _complete(self, study: optuna.Study, flight: _InFlight, event: Run) -> None:
        values = [event.metrics.get(o.metric) for o in self.objectives]
        if any(v is None for v in values):
            missing = [o.metric for o, v in zip(self.objectives, values, strict=True) if v is None]
            self._fail(study, event.trial_number, f"trial reported no {missing}")
            return
        study.tell(flight.trial, [float(v) for v in values if v is not None])
        self._finish(flight, "completed", event)

    def _finish(self, flight: _InFlight, state: Any, event: Run) -> None:
        number = flight.trial.number
        self._outcomes[number] = TrialOutcome(
            number,
            state,
            flight.params,
            dict(event.metrics),
            dict(event.artifacts),
            event.run_id,
            flight.attempt + 1,
            event.message,
        )
        del self._in_flight[number]

    def _retry_or_fail(self, study: optuna.Study, number: int, why: str) -> None:
        flight = self._in_flight[number]
        if flight.attempt + 1 < self.budget.max_attempts:
            flight.attempt += 1
            flight.last_heard = time.monotonic()
            self._send(number, flight.params, flight.attempt)
        else:
            self._fail(study, number, why)

    def _fail(self, study: optuna.Study, number: int, why: str) -> None:
        flight = self._in_flight.pop(number)
        study.tell(flight.trial, state=TrialState.FAIL)
        self._outcomes[number] = TrialOutcome(
            number,
            "failed",
            flight.params,
            {},
            {},
            trial_run_id(self.study_name, number),
            flight.attempt + 1,
            why,
        )

    def _check_silence(self, study: optuna.Study) -> None:
        now = time.monotonic()
        for number, flight in list(self._in_flight.items()):
            if now - flight.last_heard > self.budget.trial_timeout_s:
                silent = f"no report for {self.budget.trial_timeout_s:.0f} s (worker lost?)"
                self._retry_or_fail(study, number, silent)

    def _result(self, warmed: int) -> SearchResult:
        outcomes = [self._outcomes[n] for n in sorted(self._outcomes)]
        completed = [o for o in outcomes if o.state == "completed"]
        front = pareto_front(completed, self.objectives)
        primary = self.objectives[0]
        sign = 1.0 if primary.direction == "minimize" else -1.0
        best = min(front, key=lambda o: sign * o.metrics[primary.metric], default=None)
        return SearchResult(
            self.study_name, self.sampler, outcomes, best, [o.number for o in front], warmed
        )


def pareto_front(
    outcomes: Sequence[TrialOutcome], objectives: Sequence[Objective]
) -> list[TrialOutcome]:
    """The outcomes no other outcome dominates (at least as good in every objective and not
    identical); with one objective, the best one(s).

    >>> def t(n, loss, ms):
    ...     return TrialOutcome(n, "completed", {}, {"loss": loss, "ms": ms}, {}, "", 1)
    >>> objectives = [Objective("loss"), Objective("ms")]
    >>> [o.number for o in pareto_front([t(0, 1, 1), t(1, 2, 2), t(2, 0.5, 3)], objectives)]
    [0, 2]
    """

    def key(o: TrialOutcome) -> list[float]:
        return [
            o.metrics[ob.metric] * (1.0 if ob.direction == "minimize" else -1.0)
            for ob in objectives
        ]

    keys = [key(o) for o in outcomes]

    def dominated(i: int) -> bool:
        return any(
            all(a <= b for a, b in zip(keys[j], keys[i], strict=True)) and keys[j] != keys[i]
            for j in range(len(keys))
            if j != i
        )

    return [o for i, o in enumerate(outcomes) if not dominated(i)]
