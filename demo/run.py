"""``headwater demo``: the whole loop on the demo domain, live on the platform.

It starts the platform, the feature worker, the warehouse sink and the Kafka scorer (the
platform's own processes), and in this process the loop's agents: the loop handler (label
join, live metrics, drift and error detectors, retraining policy, canary controller), the skew
handler, the retrainer and an observer. Then it streams the demo's card transactions with a
distribution shift and a concept drift injected part-way, and reports each step as it happens:
bootstrap model, drift detected, retrain with a search, canary steps, promotion or rollback.

Every run has its own topic prefix and its own stretch of event time, so runs never mix in the
topics or the warehouse, and the same ``--events``/``--seed`` replay the same stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from headwater.core.errors import HeadwaterError
from headwater.core.settings import HeadwaterSettings
from headwater.demo.generator import START_MS, DemoConfig, DemoStream
from headwater.demo.observer import DemoObserver
from headwater.demo.processes import Workers
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import ensure_topics
from headwater.infra.warehouse import Warehouse, connect_warehouse
from headwater.loop.agent_runner import AgentRunner
from headwater.loop.canary import CanaryConfig
from headwater.loop.loop_handler import LoopConfig, LoopHandler
from headwater.loop.references import BundleReferences
from headwater.loop.retrainer import Retrainer
from headwater.loop.skew_handler import SkewHandler
from headwater.operate import platform
from headwater.schemas.models import Label, RetrainRequest, Transaction
from headwater.streams.feature_module import load_feature_module
from headwater.trainers.artifacts import ArtifactStore

DAY_MS = 86_400_000
RUN_SPAN_MS = 10 * DAY_MS  # each run's own stretch of event time (room for 400k events)
DRIFT_WINDOW = 300


class DemoError(HeadwaterError):
    """The demo could not run its loop to a decision (names the step that failed)."""


@dataclass(frozen=True)
class DemoOptions:
    events: int = 20_000
    seed: int = 7
    bad_candidate: bool = False
    rate: float = 300.0  # events per second once the bootstrap model serves
    bootstrap_fraction: float = 0.2
    drift_fraction: float = 0.3
    cards: int = 100
    fraud_rate: float = 0.05
    trials: int = 4
    retrain_rows: int = 800  # labelled rows of the new world before the retrain trains
    warmup_fraction: float = 0.05  # cards' first events, before their histories fill in
    malformed_events: int = 2  # records no application should send: dead-lettered, never lost
    # The stream spans a few hours of event time: the model reads the features whose windows
    # fill within it (day-long windows and the hour of day would drift on their own).
    # Burst features (time since last event, 10-minute counts) would catch fraud whatever its
    # pattern; the demo leaves them out so the concept drift has something to break.
    features: tuple[str, ...] = (
        "amount",
        "amount_last_1",
        "amount_last_2",
        "amount_last_3",
        "distance_km",
    )
    decision_timeout_s: float = 180.0


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Clock:
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class DemoRun:
    """One run of the demo; :meth:`run` returns the summary."""

    def __init__(
        self,
        settings: HeadwaterSettings,
        options: DemoOptions,
        progress: Callable[[str], None] = print,
    ) -> None:
        self.options = options
        tag = int(time.time())
        self.settings = settings.model_copy(
            update={"topic_prefix": f"{settings.topic_prefix}demo-{tag}-"}
        )
        # A stretch of the past of its own (the warehouse keeps every run; training reads labels
        # known by now), shifted by whole days so hour-of-day is identical for the same seed.
        self.start_ms = START_MS - (tag % 365 + 1) * RUN_SPAN_MS
        self.end_ms = self.start_ms + RUN_SPAN_MS
        self.model = settings.serving_model
        self.drift_at = int(options.events * options.drift_fraction)
        self.bootstrap = int(options.events * options.bootstrap_fraction)
        self._progress = progress
        self._clock = _Clock()
        self.produced = 0
        self.malformed = 0
        self.labels_produced = 0
        self.drift_started_ms: int | None = None
        self.event_times: list[int] = []
        self.workers = Workers(self.settings.home / "demo-logs" / f"demo-{tag}")
        self.runners: list[AgentRunner] = []
        self._said = set()
        self._began_ms = _now_ms()

    def say(self, message: str) -> None:
        self._progress(f"[{self._clock.elapsed():6.1f}s] {message}")

    # -- the run --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        # Training shares two cores with every worker: torch's spinning thread pool would
        # make each step wait on descheduled threads; one thread trains these small nets fast.
        torch.set_num_threads(1)
        # the demo runs its own workers for its topics (and stops them when it ends)
        platform.up(self.settings, processes=False)
        ensure_topics(self.settings)
        self.say(
            f"platform up: kafka {self.settings.bootstrap_servers}, warehouse "
            f"{self.settings.warehouse_mode}, topics {self.settings.topic_prefix}*"
        )
        warehouse = connect_warehouse(self.settings)
        try:
            observer = self._start(warehouse)
            stream = iter(DemoStream(self._demo_config()).records(self.options.events))
            self._produce(stream, self.bootstrap, paced=False)
            self._bootstrap_model(warehouse, observer)
            self._send_malformed()
            self.say(
                f"streaming {self.options.events - self.bootstrap} more events at "
                f"{self.options.rate:g}/s; the drift begins at event {self.drift_at}"
            )
            rest = self._records(stream)
            self._produce(rest, self.options.events - self.bootstrap, paced=True, observer=observer)
            self._produce(rest, 0, paced=False)  # the labels still due
            self._await_decision(observer)
            lost = self._drain(observer)
            summary = self._summary(observer, lost)
            summary["warehouse_rows"] = self._warehouse_rows(warehouse)
            return summary
        finally:
            self._stop()
            warehouse.close()

    def _demo_config(self) -> DemoConfig:
        o = self.options
        return DemoConfig(
            seed=o.seed,
            cards=o.cards,
            start_ms=self.start_ms,
            fraud_rate=o.fraud_rate,
            shift_at=self.drift_at,
            drift_at=self.drift_at,
        )

    def _start(self, warehouse: Warehouse) -> DemoObserver:
        s = self.settings
        pids = {
            name: self.workers.start(name, module, s)
            for name, module in (
                ("features", "headwater.streams.worker"),
                ("sink", "headwater.streams.sink"),
                ("scorer", "headwater.serving.kafka_scorer"),
            )
        }
        config = LoopConfig(
            drift_window=DRIFT_WINDOW,
            tumbling_ms=60_000,
            metrics_every=200,
            retrain_min_alarms=2,
            retrain_sustain_ms=120_000,
            retrain_trials=self.options.trials,
            canary=CanaryConfig(min_outcomes_per_step=50),
        )
        loop = LoopHandler(BundleReferences(ArtifactStore.from_settings(s)), config)
        feature_set = load_feature_module(s.features).feature_set
        observer = DemoObserver(self.model, self.drift_at, lambda: self.produced, _now_ms)
        retrainer = Retrainer(
            s,
            warehouse,
            model=self.model,
            feature_set=feature_set.name,
            data_start_ms=lambda request: self._retrain_start(observer),
            seed=self.options.seed,
            sabotage=self.options.bad_candidate,
            min_rows=self.options.retrain_rows,
            wait_for_rows_s=60.0,
            feature_names=self.options.features,
            data_end_ms=self.end_ms,
        )
        prefix = s.topic_prefix
        for handler, name in (
            (loop, "loop"),
            (SkewHandler(feature_set), "skew"),
            (observer, "observer"),
            (retrainer, "retrainer"),
        ):
            self.runners.append(AgentRunner(s, handler, f"{prefix}{name}").start())
        self.loop, self.retrainer = loop, retrainer
        self.say(
            "workers: "
            + ", ".join(f"{n} pid {p}" for n, p in pids.items())
            + "; loop agents: loop, skew, retrainer, observer"
        )
        return observer

    # -- producing ----------------------------------------------------------------------------
    def _produce(
        self,
        stream: Iterator[Transaction | Label],
        count: int,
        *,
        paced: bool,
        observer: DemoObserver | None = None,
    ) -> None:
        """Send ``count`` transactions (with the labels that fall due meanwhile); paced at
        ``rate`` per second, reporting the loop's steps as they appear."""
        bus, sent, due = EventBus(self.settings), 0, time.monotonic()
        last_check = 0.0
        for record in stream:
            if isinstance(record, Label):
                bus.send("labels", record)
                self.labels_produced += 1
                continue
            if sent == count:
                # the next transaction belongs to the next phase: keep it for then
                self._held = record
                break
            self._send_transaction(bus, record)
            sent += 1
            if paced:
                due += 1.0 / self._rate(observer)
                ahead = due - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if observer is not None and time.monotonic() - last_check > 0.5:
                last_check = time.monotonic()
                self._check(observer)
        bus.flush()
        if count:
            self.say(f"{self.produced} events produced, {self.labels_produced} labels")

    def _send_malformed(self) -> None:
        """Records no application should send (not an event; an unknown schema's fingerprint),
        so the run shows them dead-lettered with their reason, and counts them: none is lost."""
        bus = EventBus(self.settings)
        payloads = (b"not an event", b"\xc3\x01" + bytes(8) + b"\x02")
        for i in range(self.options.malformed_events):
            bus.send_bytes("events.raw", payloads[i % len(payloads)], f"malformed-{i}".encode())
        bus.flush()
        self.malformed = self.options.malformed_events
        if self.malformed:
            self.say(f"{self.malformed} malformed records sent: they must reach deadletter")

    def _rate(self, observer: DemoObserver | None) -> float:
        """Events per second now: while a retrain is in flight the stream slows to a tenth
        (event time keeps its own clock), so a small demo keeps traffic for the canary."""
        t = observer.timeline if observer is not None else None
        retraining = t is not None and t.retrain_request is not None and t.candidate is None
        if retraining and "quiet" not in self._said:
            self._said.add("quiet")
            self.say(f"retrain in flight: the stream slows to {self.options.rate / 10:g}/s")
        return self.options.rate / 10 if retraining else self.options.rate

    def _send_transaction(self, bus: EventBus, record: Transaction) -> None:
        if self.produced == self.drift_at:
            self.drift_started_ms = _now_ms()
            self.say(f"event {self.drift_at}: distribution shift and concept drift begin")
        bus.send_raw(record.to_avro())
        self.event_times.append(record.event_time_ms)
        self.produced += 1

    def _records(self, stream: Iterator[Transaction | Label]) -> Iterator[Transaction | Label]:
        held, self._held = self._held, None
        if held is not None:
            yield held
        yield from stream

    _held: Transaction | None = None

    def _check(self, observer: DemoObserver) -> None:
        dead = self.workers.dead()
        if dead:
            name, tail = next(iter(dead.items()))
            raise DemoError(f"the {name} worker exited; its log ends:\n{tail}")
        for runner in self.runners:
            if runner.error is not None:
                raise DemoError(f"agent {runner.group} failed: {runner.error}")
        self._report(observer)

    def _report(self, observer: DemoObserver) -> None:
        t = observer.timeline
        said = self._said
        if t.first_alarm is not None and "alarm" not in said:
            said.add("alarm")
            a = t.first_alarm
            self.say(
                f"drift detected by event {t.first_alarm_events}: {a.kind} "
                f"{a.feature or 'errors'} {a.statistic} {a.value:.4g} > {a.threshold:.4g}"
            )
        if t.retrain_request is not None and "retrain" not in said:
            said.add("retrain")
            self.say(
                f"retrain requested ({t.retrain_request.trials} trials): {t.retrain_request.reason}"
            )
        if t.candidate is not None and "candidate" not in said:
            said.add("candidate")
            self.say(
                f"candidate {self.model} v{t.candidate.version} registered by run "
                f"{t.candidate.run_id}"
            )
        for i, weight in enumerate(t.canary_steps):
            if f"step{i}" not in said:
                said.add(f"step{i}")
                self.say(
                    f"canary {self.model} v{t.candidate.version if t.candidate else '?'} "
                    f"at {weight:.0%}"
                )
        if t.decision is not None and "decision" not in said:
            said.add("decision")
            self.say(f"decision: {t.decision.action} — {t.decision.reason}")

    _said: set[str]

    def _retrain_start(self, observer: DemoObserver) -> int:
        """Train on the events since the first alarm's window began, so the new model learns
        the world as it is now."""
        detected = observer.timeline.first_alarm_events or self.produced
        index = max(self.bootstrap, detected - DRIFT_WINDOW)
        return self.event_times[min(index, len(self.event_times) - 1)]

    # -- bootstrap, decision, drain, summary ----------------------------------------------
    def _bootstrap_model(self, warehouse: Warehouse, observer: DemoObserver) -> None:
        db = warehouse.database
        wanted = int(self.labels_produced * 0.9)

        def rows(table: str) -> int:
            sql = (
                f"SELECT count() FROM {db}.{table} FINAL WHERE event_time_ms >= {self.start_ms} "
                f"AND event_time_ms < {self.end_ms}"
            )
            return int(warehouse.query(sql).scalar())

        def ready() -> bool:
            # every feature vector: a label whose own vector is not in yet would be joined to
            # the card's previous one (as of its time) and teach the model the wrong thing
            return rows("labels") >= wanted and rows("features") >= self.bootstrap

        self._wait(ready, 180, "bootstrap labels and features in the warehouse", observer)
        self.say(
            f"{rows('labels')} labels and {rows('features')} feature vectors in the "
            f"warehouse; training {self.model} v1"
        )
        warmed_up = self.event_times[int(self.options.events * self.options.warmup_fraction)]
        bootstrap = Retrainer(
            self.settings,
            warehouse,
            model=self.model,
            feature_set=self.retrainer.feature_set,
            data_start_ms=lambda request: warmed_up,
            seed=self.options.seed,
            feature_names=self.options.features,
            data_end_ms=self.end_ms,
        )
        request = RetrainRequest(
            request_id=f"bootstrap-{self.settings.topic_prefix}",
            model=self.model,
            reason="bootstrap: the first model",
            requested_at_ms=_now_ms(),
            trials=1,
        )
        outcome = bootstrap.retrain(request)
        self.say(
            f"{self.model} v{outcome.version} registered by run {outcome.run_id} "
            f"(valid AUC {outcome.metrics.get('valid_auc', float('nan')):.3f})"
        )
        self._wait(
            lambda: observer.champion == outcome.version,
            60,
            f"the canary controller to promote {self.model} v{outcome.version}",
            observer,
        )
        self.say(f"{self.model} v{outcome.version} promoted (first version) and serving")

    def _wait(
        self, check: Callable[[], bool], timeout_s: float, what: str, observer: DemoObserver
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            self._check(observer)
            if time.monotonic() > deadline:
                raise DemoError(
                    f"timed out after {timeout_s:.0f} s waiting for {what}; "
                    f"logs in {self.workers.logs}"
                )
            time.sleep(0.3)

    def _await_decision(self, observer: DemoObserver) -> None:
        """The stream is over: give the trailing labels a moment to settle a running canary
        (without traffic it cannot move further)."""
        deadline = time.monotonic() + min(self.options.decision_timeout_s, 30.0)
        while observer.timeline.decision is None and time.monotonic() < deadline:
            self._check(observer)
            time.sleep(0.5)
        self._report(observer)

    def _drain(self, observer: DemoObserver) -> int:
        def done() -> bool:
            answered = len(observer.answered) + observer.deadletters
            expected = self.produced + self.malformed
            return answered >= expected and observer.labels >= self.labels_produced

        try:
            self._wait(done, 90, "every event's prediction and every label", observer)
        except DemoError as error:
            self.say(str(error))
        answered = len(observer.answered) + observer.deadletters
        missing = max(0, self.produced + self.malformed - answered)
        return missing + max(0, self.labels_produced - observer.labels)

    def _warehouse_rows(self, warehouse: Warehouse) -> dict[str, int]:
        """This run's rows in the warehouse, table by table (its event-time stretch, or since it
        began for the loop's own events), once the sink has caught up with the labels."""
        db, began = warehouse.database, self._began_ms
        stretch = f"BETWEEN {self.start_ms} AND {self.end_ms}"
        model = f"model = '{self.model}'"
        queries = {
            "labels": f"labels FINAL WHERE event_time_ms {stretch}",
            "features": f"features FINAL WHERE event_time_ms {stretch}",
            "predictions": f"predictions FINAL WHERE {model} AND event_time_ms {stretch}",
            "metrics": f"metrics FINAL WHERE {model} AND window_start_ms {stretch}",
            "drift": f"drift FINAL WHERE {model} AND detected_at_ms >= {began}",
            "retrain_requests": f"retrain_requests FINAL WHERE {model} AND "
            f"requested_at_ms >= {began}",
            "runs": f"runs FINAL WHERE {model} AND event_time_ms >= {began}",
            "model_versions": f"model_versions FINAL WHERE {model} AND event_time_ms >= {began}",
            "routing": f"routing FINAL WHERE {model} AND updated_at_ms >= {began}",
        }

        def count(table: str) -> int:
            return int(warehouse.query(f"SELECT count() FROM {db}.{queries[table]}").scalar())

        def caught_up() -> bool:
            return (
                count("labels") >= self.labels_produced
                and count("features") >= self.produced
                and count("predictions") >= self.produced
            )

        deadline = time.monotonic() + 60
        while not caught_up() and time.monotonic() < deadline:
            time.sleep(1.0)  # the sink commits in batches, topic by topic
        return {table: count(table) for table in queries}

    def _summary(self, observer: DemoObserver, lost: int) -> dict[str, Any]:
        t = observer.timeline
        began = self.drift_started_ms

        def since_drift(ms: int | None) -> float | None:
            return None if ms is None or began is None else round((ms - began) / 1000, 3)

        decision = t.decision.action if t.decision else None
        summary: dict[str, Any] = {
            "events": self.produced,
            "predictions": observer.predictions,
            "labels": self.labels_produced,
            "drift_injected_at_event": self.drift_at,
            "drift_detected_at_event": t.first_alarm_events,
            "drift_alarm": t.first_alarm.alarm_id if t.first_alarm else None,
            "retrain_request_id": t.retrain_request.request_id if t.retrain_request else None,
            "retrain_run_id": t.candidate.run_id if t.candidate else None,
            "candidate_version": t.candidate.version if t.candidate else None,
            "canary_steps": t.canary_steps,
            "decision": decision,
            "decision_reason": t.decision.reason if t.decision else None,
            "quality": observer.quality(),
            "seconds_to_detect": since_drift(t.first_alarm_ms),
            "seconds_to_decision": since_drift(t.decision_ms),
            "lost_records": lost,
            "deadletters": observer.deadletters,
            "malformed_events": self.malformed,
            "observed_records": dict(observer.seen),
            "alarms_before_drift": observer.alarms_before_drift,
            "in_sample_predictions_not_watched": self.loop.not_watched(),
            "skew_alarms": observer.skew_alarms,
            "label_join": asdict(self.loop.joiner.counts),
            "topic_prefix": self.settings.topic_prefix,
            "logs": str(self.workers.logs),
        }
        return summary

    def _stop(self) -> None:
        errors = []
        for runner in self.runners:
            try:
                runner.stop(timeout_s=120.0)  # a retrain in flight finishes first
            except HeadwaterError as error:
                errors.append(str(error))
        self.workers.stop()
        if errors:
            self.say("agents reported: " + "; ".join(errors))
