"""``headwater demo``: the whole loop on the demo domain, live on the platform.

It starts the platform and exactly the processes ``headwater up`` starts (the feature worker,
the sink, the scorers, the loop's agents, the retrain worker and its trial workers:
:func:`headwater.operate.processes.start_stream_processes`), on topics of its own prefix. It
trains the first model as a user would (the pipeline ``headwater train`` runs, then a promotion
through the registry), then streams the demo's card transactions at a constant rate with a
distribution shift and a concept drift injected part-way. What the platform does about it —
drift detected, retrain requested, candidate registered, canary steps, promotion or rollback —
is read back from the topics by an observer, as any user could, and reported as it happens.

Every run has its own topic prefix and its own stretch of event time, so runs never mix in the
topics or the warehouse, and the same ``--events``/``--seed`` replay the same stream.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from headwater.core.errors import HeadwaterError
from headwater.core.settings import HeadwaterSettings
from headwater.demo.bad_candidate import push_bad_candidate
from headwater.demo.generator import START_MS, DemoConfig, DemoStream
from headwater.demo.observer import DemoObserver, event_index
from headwater.demo.process_cost import ProcessCost
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import ensure_topics
from headwater.infra.warehouse import Warehouse, connect_warehouse
from headwater.loop.agent_runner import AgentRunner
from headwater.operate import platform
from headwater.operate.processes import (
    start_stream_processes,
    stop_stream_processes,
    stream_process_pids,
)
from headwater.schemas.models import Label, Transaction
from headwater.trainers.pipeline import TrainRequest, train_model
from headwater.trainers.registry import ModelRegistry

DAY_MS = 86_400_000
RUN_SPAN_MS = 10 * DAY_MS  # each run's own stretch of event time (room for 400k events)
DEMO_FEATURES = "headwater.demo.fraud_features"  # the demo model's feature module
ACTOR = "headwater-demo"


class DemoError(HeadwaterError):
    """The demo could not run its loop to a decision (names the step that failed)."""


@dataclass(frozen=True)
class DemoOptions:
    events: int = 20_000
    seed: int = 7
    bad_candidate: bool = False
    rate: float = 300.0  # events per second once the bootstrap model serves, held throughout
    bootstrap_fraction: float = 0.2
    drift_fraction: float = 0.3
    cards: int = 100
    fraud_rate: float = 0.05
    bootstrap_epochs: int = 40
    warmup_fraction: float = 0.05  # cards' first events, before their histories fill in
    malformed_events: int = 2  # records no application should send: dead-lettered, never lost
    decision_timeout_s: float = 30.0  # after the stream, for trailing labels to settle a canary
    # The stream goes on at the same rate past ``events`` while the platform is still answering
    # a drift (a retrain or a canary in flight), up to this many events (0: three times events).
    max_events: int = 0
    after_decision_events: int = 3_000  # streamed on after a decision, to show its effect

    @property
    def stream_limit(self) -> int:
        return self.max_events or 3 * self.events


def _now_ms() -> int:
    return int(time.time() * 1000)


def _free_port(host: str) -> int:
    """A port for the demo's own HTTP scorer (``headwater up``'s may hold the configured one)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _is_retrain_process(name: str) -> bool:
    return "retrain" in name or "trial" in name


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
            update={
                "topic_prefix": f"{settings.topic_prefix}demo-{tag}-",
                "features": DEMO_FEATURES,
                "http_port": _free_port(settings.bind_host),
            }
        )
        # A stretch of the past of its own (the warehouse keeps every run; training reads labels
        # known by now), shifted by whole days so hour-of-day is identical for the same seed.
        self.start_ms = START_MS - (tag % 365 + 1) * RUN_SPAN_MS
        self.end_ms = self.start_ms + RUN_SPAN_MS
        self.model = settings.serving_model
        # With --bad-candidate the world stays as it is (the drift would come after the stream):
        # the canary judges the operator's model alone, with no retrain answering a drift.
        self.drift_at = (
            options.stream_limit + 1
            if options.bad_candidate
            else int(options.events * options.drift_fraction)
        )
        self.bootstrap = int(options.events * options.bootstrap_fraction)
        self._progress = progress
        self._clock = _Clock()
        self.produced = 0
        self.malformed = 0
        self.labels_produced = 0
        self.drift_started_ms: int | None = None
        self.event_times: list[int] = []
        self.pids: dict[str, int] = {}
        self.runners: list[AgentRunner] = []
        self.retrain_cost = ProcessCost()  # the retrain worker and its trial workers
        self.platform_cost = ProcessCost()  # every process `up` starts
        self.stream_seconds = 0.0
        self._retrain_cpu: list[float | None] = [None, None]  # at the request, at the candidate
        self.streamed = 0
        self._said: set[str] = set()
        self._began_ms = _now_ms()

    def say(self, message: str) -> None:
        self._progress(f"[{self._clock.elapsed():6.1f}s] {message}")

    # -- the run --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        # The bootstrap trains here, beside every worker on the machine's cores: torch's
        # spinning thread pool would make each step wait on descheduled threads.
        torch.set_num_threads(1)
        platform.up(self.settings, processes=False)
        ensure_topics(self.settings)
        self.say(
            f"platform up: kafka {self.settings.bootstrap_servers}, warehouse "
            f"{self.settings.warehouse_mode}, topics {self.settings.topic_prefix}*"
        )
        warehouse = connect_warehouse(self.settings)
        try:
            observer = self._start()
            stream = iter(DemoStream(self.demo_config()).records(self.options.stream_limit))
            self._produce(stream, self.bootstrap, paced=False)
            self._bootstrap_model(warehouse, observer)
            if self.options.bad_candidate:
                self._bad_candidate(warehouse)
            self._send_malformed()
            self.say(
                f"streaming {self.options.events - self.bootstrap} more events at "
                f"{self.options.rate:g}/s; "
                + (
                    "no drift: the canary judges the operator's model"
                    if self.options.bad_candidate
                    else f"the drift begins at event {self.drift_at}"
                )
            )
            rest = self._records(stream)
            began = time.monotonic()
            self._produce(rest, self.options.events - self.bootstrap, paced=True, observer=observer)
            self.stream_seconds = time.monotonic() - began
            self.streamed = self.produced - self.bootstrap
            self.say(
                f"stream done: {self.streamed} events in {self.stream_seconds:.1f} s "
                f"({self.streamed / max(self.stream_seconds, 1e-9):.0f}/s)"
            )
            self._trailing_labels(rest)
            self._await_decision(observer)
            lost = self._drain(observer)
            self._sample_costs()
            summary = self._summary(observer, lost)
            summary["warehouse_rows"] = self._warehouse_rows(warehouse)
            return summary
        finally:
            self._stop()
            warehouse.close()

    def demo_config(self) -> DemoConfig:
        o = self.options
        return DemoConfig(
            seed=o.seed,
            cards=o.cards,
            start_ms=self.start_ms,
            fraud_rate=o.fraud_rate,
            shift_at=self.drift_at,
            drift_at=self.drift_at,
        )

    def _start(self) -> DemoObserver:
        s = self.settings
        self.pids = start_stream_processes(s)
        observer = DemoObserver(self.model, self.drift_at, lambda: self.produced, _now_ms)
        self.runners.append(AgentRunner(s, observer, f"{s.topic_prefix}observer").start())
        self._sample_costs()
        self.say(
            "the platform's processes (as `headwater up` starts them): "
            + ", ".join(f"{n} pid {p}" for n, p in self.pids.items())
            + f"; logs in {s.home}"
        )
        return observer

    def _sample_costs(self) -> None:
        self.retrain_cost.update(p for n, p in self.pids.items() if _is_retrain_process(n))
        self.platform_cost.update(self.pids.values())

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
            if sent >= count and not (observer is not None and self._answering(observer)):
                # the next transaction belongs to the next phase: keep it for then
                self._held = record
                break
            self._send_transaction(bus, record)
            sent += 1
            if paced:
                due += 1.0 / self.options.rate  # the same rate throughout, retrain or not
                ahead = due - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if observer is not None and time.monotonic() - last_check > 0.5:
                last_check = time.monotonic()
                self._check(observer)
        bus.flush()
        if count:
            self.say(f"{self.produced} events produced, {self.labels_produced} labels")

    def _answering(self, observer: DemoObserver) -> bool:
        """Whether the platform is still answering a drift (a retrain requested or a candidate
        registered, no decision yet, or a decision less than ``after_decision_events`` ago):
        the stream then goes on, at the same rate, up to the stream limit — a canary needs
        traffic to decide, and the decision's effect needs traffic to show."""
        t = observer.timeline
        if t.decision_events is not None:
            return self.produced < t.decision_events + self.options.after_decision_events
        pending = t.retrain_request is not None or t.candidate is not None
        if pending and "extend" not in self._said:
            self._said.add("extend")
            self.say(
                f"{self.options.events} events reached with the platform still answering the "
                f"drift: streaming on at {self.options.rate:g}/s until its decision and "
                f"{self.options.after_decision_events} events more "
                f"(at most {self.options.stream_limit} events)"
            )
        return pending

    def _trailing_labels(self, rest: Iterator[Transaction | Label]) -> None:
        """The labels of the sent transactions still due; the stream's later transactions (past
        the last sent one) are not sent. Labels follow their transactions in event-time order,
        so past the last one's label delay none is left."""
        bus = EventBus(self.settings)
        last = self.event_times[-1] + self.demo_config().label_delay_ms if self.event_times else 0
        sent_ids = self.produced
        for record in rest:
            if isinstance(record, Label):
                if event_index(record.event_id) < sent_ids:
                    bus.send("labels", record)
                    self.labels_produced += 1
            elif record.event_time_ms > last:
                break
        bus.flush()

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
        self._sample_costs()
        t = observer.timeline
        # the retrain's own cost: its processes' CPU from the request to the registration
        if t.retrain_request is not None and self._retrain_cpu[0] is None:
            self._retrain_cpu[0] = self.retrain_cost.cpu_s
        if t.candidate is not None and self._retrain_cpu[1] is None:
            self._retrain_cpu[1] = self.retrain_cost.cpu_s
        running = stream_process_pids(self.settings)
        dead = [name for name in self.pids if running.get(name) is None]
        if dead:
            log = self.settings.home / f"{dead[0]}.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise DemoError(f"the {dead[0]} process exited; {log} ends:\n{tail}")
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

    # -- bootstrap, decision, drain, summary ----------------------------------------------
    def _bootstrap_model(self, warehouse: Warehouse, observer: DemoObserver) -> None:
        """The first model, as a user trains one: ``headwater train``'s pipeline on the
        bootstrap's labelled rows, then a promotion through the registry."""
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
            f"warehouse; training {self.model} (the pipeline `headwater train` runs)"
        )
        request = TrainRequest(
            model=self.model,
            epochs=self.options.bootstrap_epochs,
            start_ms=self.event_times[int(self.options.events * self.options.warmup_fraction)],
            end_ms=self.end_ms,
            seed=self.options.seed,
            reason="bootstrap: the first model",
            actor=ACTOR,
        )
        outcome = train_model(self.settings, request, warehouse)
        self.say(
            f"{self.model} v{outcome.version} registered by run {outcome.run_id} "
            f"(valid AUC {outcome.metrics.get('valid_auc', float('nan')):.3f})"
        )
        ModelRegistry.open(self.settings).promote(
            self.model, outcome.version, reason="the first version of the model", actor=ACTOR
        )
        self._wait(
            lambda: observer.champion == outcome.version,
            60,
            f"{self.model} v{outcome.version}'s promotion on model-versions",
            observer,
        )
        self.say(f"{self.model} v{outcome.version} promoted (first version) and serving")

    def _bad_candidate(self, warehouse: Warehouse) -> None:
        version = push_bad_candidate(
            self.settings,
            warehouse,
            self.model,
            start_ms=self.event_times[int(self.options.events * self.options.warmup_fraction)],
            end_ms=self.end_ms,
            seed=self.options.seed,
        )
        self.say(
            f"--bad-candidate: {self.model} v{version.version}, trained on inverted labels, "
            "pushed into canary by the operator"
        )

    def _wait(
        self, check: Callable[[], bool], timeout_s: float, what: str, observer: DemoObserver
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            self._check(observer)
            if time.monotonic() > deadline:
                raise DemoError(
                    f"timed out after {timeout_s:.0f} s waiting for {what}; "
                    f"logs in {self.settings.home}"
                )
            time.sleep(0.3)

    def _await_decision(self, observer: DemoObserver) -> None:
        """The stream is over: give the trailing labels a moment to settle a running canary
        (without traffic it cannot move further)."""
        deadline = time.monotonic() + self.options.decision_timeout_s
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
            "drift_injected_at_event": None if self.options.bad_candidate else self.drift_at,
            "drift_detected_at_event": t.first_alarm_events,
            "decision_at_event": t.decision_events,
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
            "skew_alarms": observer.skew_alarms,
            "label_join": asdict(observer.joiner.counts),
            "topic_prefix": self.settings.topic_prefix,
            "logs": str(self.settings.home),
            **self._costs(observer),
        }
        return summary

    def _costs(self, observer: DemoObserver) -> dict[str, Any]:
        """What the loop cost and how fast it was, beside the rate the stream kept."""
        t = observer.timeline

        def seconds(begin_ms: int | None, end_ms: int | None) -> float | None:
            return (
                None if begin_ms is None or end_ms is None else round((end_ms - begin_ms) / 1000, 3)
            )

        return {
            "rate_target": self.options.rate,
            "rate_achieved": round(self.streamed / self.stream_seconds, 1)
            if self.stream_seconds
            else None,
            "stream_seconds": round(self.stream_seconds, 1),
            "seconds_detection_to_decision": seconds(t.first_alarm_ms, t.decision_ms),
            "seconds_request_to_candidate": seconds(t.retrain_request_ms, t.candidate_ms),
            "retrain_stages_s": t.retrain_stages(),
            "retrain_cpu_s": self._retrain_cpu_s(),
            "retrain_processes_cpu_s": self.retrain_cost.cpu_s,
            "platform_cpu_s": self.platform_cost.cpu_s,
        }

    def _retrain_cpu_s(self) -> float | None:
        """CPU seconds of the retrain worker and its trial workers from the retrain request
        to the candidate's registration (to the end of the run if none was registered)."""
        began, ended = self._retrain_cpu
        if began is None:
            return None
        return round((self.retrain_cost.cpu_s if ended is None else ended) - began, 2)

    def _stop(self) -> None:
        errors = []
        for runner in self.runners:
            try:
                runner.stop(timeout_s=30.0)
            except HeadwaterError as error:
                errors.append(str(error))
        stop_stream_processes(self.settings)
        if errors:
            self.say("agents reported: " + "; ".join(errors))
