"""The retrain worker: ``retrain-requests`` in, a new registered version (and its canary) out.

Requests come from drift alarms or people. One retrain runs per model at a time; requests for
a model arriving meanwhile are coalesced into the next one
(:mod:`headwater.trainers.retrain_queue`).
Offsets are committed only up to the first request whose retrain has not finished, so a
killed worker redoes unfinished retrains. A finished retrain registers the new version and
puts it in ``canary`` (the canary controller reacts to that event). Only a model's very first
version, when it has no champion, is promoted at once; the registry is caught up on
``model-versions`` right before that decision, so a stale view never skips the canary.
Undecodable requests go to ``deadletter``.

Trials run in trial workers that are already running when a request arrives: ``trial_workers``
local ones the worker starts once and keeps for its whole life, or (0) those running elsewhere,
such as the ones ``headwater up`` supervises. Starting them per search cost Python's and
torch's imports and a consumer-group join on every retrain, while the stream waited on a
degraded model.
"""

from __future__ import annotations

import argparse
import logging
import queue
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from headwater.core.errors import BrokerUnavailable, HeadwaterError, SchemaError
from headwater.core.logs import configure_logging
from headwater.core.settings import HeadwaterSettings, load_settings
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import consumer_error_is_fatal, make_consumer
from headwater.infra.metrics import METRICS
from headwater.infra.warehouse import Warehouse, connect_warehouse
from headwater.schemas.dead_letters import dead_letter
from headwater.schemas.models import RetrainRequest
from headwater.trainers.errors import DatasetError, IllegalTransition
from headwater.trainers.foreground import run_until_sigterm
from headwater.trainers.pipeline import TrainOutcome, TrainRequest, train_model
from headwater.trainers.registry import ModelRegistry
from headwater.trainers.retrain_queue import Retrain, RetrainQueue
from headwater.trainers.trial_worker import local_workers, trial_worker_count

ACTOR = "retrain-worker"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainResult:
    retrain: Retrain
    outcome: TrainOutcome | None
    error: str = ""


@dataclass
class RetrainWorker:
    """Consumes ``retrain-requests`` until told to stop or out of work."""

    settings: HeadwaterSettings
    warehouse: Warehouse | None = None
    trial_workers: int = 2  # local ones kept for the worker's life; 0: those running elsewhere
    epochs: int = 8
    feature_set: str = ""
    results: list[RetrainResult] = field(default_factory=list)
    retrains: RetrainQueue = field(default_factory=RetrainQueue)
    _done: queue.Queue[str] = field(default_factory=queue.Queue)
    _stop: threading.Event = field(default_factory=threading.Event)
    _last_finish: float = 0.0

    def stop(self) -> None:
        self._stop.set()

    def run(self, max_requests: int | None = None, idle_exit_s: float | None = None) -> int:
        """Handle requests; returns how many retrains ran."""
        with local_workers(self.settings, self.trial_workers):
            return self._run(max_requests, idle_exit_s)

    def _run(self, max_requests: int | None, idle_exit_s: float | None) -> int:
        settings = self.settings
        own_warehouse = self.warehouse is None
        warehouse = self.warehouse or connect_warehouse(settings)
        bus = EventBus(settings)
        registry = self._open_registry()
        if registry is None:  # stopped while the broker was away
            if own_warehouse:
                warehouse.close()
            return len(self.results)
        consumer = make_consumer(
            settings,
            f"{settings.topic_prefix}headwater-retrain",
            **{"max.poll.interval.ms": 3_600_000},
        )
        consumer.subscribe([settings.topic("retrain-requests")])
        seen, idle_since = 0, time.monotonic()
        try:
            while not self._stop.is_set():
                self._reap(consumer, warehouse, registry)
                busy = bool(self.retrains.running)
                if max_requests is not None and seen >= max_requests and not busy:
                    break
                idle = time.monotonic() - max(idle_since, self._last_finish)
                if idle_exit_s is not None and not busy and idle > idle_exit_s:
                    break
                message = consumer.poll(0.2)
                if message is None or self._is_noise(message):
                    continue
                idle_since = time.monotonic()
                seen += 1
                self._accept(message, bus, warehouse, registry)
                self._commit(consumer)
        finally:
            consumer.close()
            if own_warehouse:
                warehouse.close()
        return len(self.results)

    def _open_registry(self) -> ModelRegistry | None:
        """The registry, once the broker answers: a broker that is away at the start (being
        restarted, say) is waited for, with a warning each try; None if stopped meanwhile."""
        pause = 1.0
        while True:
            try:
                return ModelRegistry.open(self.settings)
            except BrokerUnavailable as error:
                log.warning("retrain worker: %s (retrying in %.0f s)", error, pause)
            if self._stop.wait(pause):
                return None
            pause = min(pause * 2, 30.0)

    def _is_noise(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if consumer_error_is_fatal(error):
            raise BrokerUnavailable(f"retrain worker: {error.str()}")
        if error.code() != KafkaError._PARTITION_EOF:  # librdkafka recovers from the others
            log.warning("retrain worker: %s (retrying)", error.str())
        return True

    def _accept(
        self, message: Message, bus: EventBus, warehouse: Warehouse, registry: ModelRegistry
    ) -> None:
        partition, offset = message.partition() or 0, message.offset() or 0
        raw = message.value() or b""
        try:
            _, fields = bus.codec.decode(raw, RetrainRequest.SCHEMA)
            request = RetrainRequest.from_avro(fields)
        except (SchemaError, ValueError) as error:
            bus.send(
                "deadletter",
                dead_letter(
                    self.settings.topic("retrain-requests"),
                    partition,
                    offset,
                    "undecodable_retrain_request",
                    str(error),
                    message.key(),
                    raw,
                ),
            )
            bus.flush()
            self.retrains.skip(partition, offset)
            METRICS.failures.labels(stage="retrain-worker", reason="undecodable").inc()
            return
        METRICS.observe("retrain-requests", request)
        log.info(
            "retrain request %s for %s: %s (train on rows from %s)",
            request.request_id,
            request.model,
            request.reason,
            request.since_ms or "the beginning",
        )
        start = self.retrains.submit(request, partition, offset)
        if start is not None:
            self._start(start, warehouse, registry)

    def _start(self, retrain: Retrain, warehouse: Warehouse, registry: ModelRegistry) -> None:
        thread = threading.Thread(
            target=self._retrain, args=(retrain, warehouse, registry), daemon=True
        )
        thread.start()

    def _retrain(self, retrain: Retrain, warehouse: Warehouse, registry: ModelRegistry) -> None:
        running = METRICS.retrains_running.labels(model=retrain.model)
        running.inc()
        began, outcome_label = time.monotonic(), "failed"
        try:
            request = TrainRequest(
                model=retrain.model,
                feature_set=self.feature_set,
                trials=retrain.trials,
                workers=0,  # the running ones: this worker's own, or those running elsewhere
                parallelism=self.trial_workers or trial_worker_count(self.settings),
                epochs=self.epochs,
                start_ms=retrain.since_ms,
                reason=retrain.reason,
                actor=ACTOR,
            )
            if retrain.since_ms:
                self._wait_for_rows(warehouse, retrain)
            outcome = train_model(self.settings, request, warehouse, registry=registry)
            action = self._hand_to_canary(registry, outcome, retrain)
            METRICS.model_actions.labels(model=retrain.model, action=action).inc()
            self.results.append(RetrainResult(retrain, outcome))
            outcome_label = "registered"
        except HeadwaterError as error:
            log.error("retrain of %s failed: %s", retrain.model, error)
            self.results.append(RetrainResult(retrain, None, str(error)))
        except Exception as error:
            # The thread's edge: a bug must not wedge the model's retrains (its next request
            # waits for this one to finish), so it fails this retrain, loudly.
            log.exception("retrain of %s failed unexpectedly", retrain.model)
            self.results.append(RetrainResult(retrain, None, f"{type(error).__name__}: {error}"))
        finally:
            running.dec()
            METRICS.retrains_finished.labels(model=retrain.model, outcome=outcome_label).inc()
            METRICS.retrain_duration.labels(model=retrain.model).observe(time.monotonic() - began)
            self._done.put(retrain.model)

    def _wait_for_rows(self, warehouse: Warehouse, retrain: Retrain) -> None:
        """Wait until ``retrain_min_rows`` labelled rows after the change are in the warehouse."""
        settings, since = self.settings, retrain.since_ms
        wanted, deadline = settings.retrain_min_rows, time.monotonic() + settings.retrain_wait_s
        rows, said = labelled_rows_since(warehouse, since), False
        while rows < wanted:
            if time.monotonic() > deadline or self._stop.is_set():
                raise DatasetError(
                    f"retrain of {retrain.model}: only {rows} labelled rows after the change at "
                    f"{since} within HEADWATER_RETRAIN_WAIT_S={settings.retrain_wait_s:g} s; "
                    f"HEADWATER_RETRAIN_MIN_ROWS={wanted}"
                )
            if not said:
                log.info(
                    "retrain of %s waits for %d labelled rows after the change at %d (%d so far)",
                    retrain.model,
                    wanted,
                    since,
                    rows,
                )
                said = True
            self._stop.wait(2.0)
            rows = labelled_rows_since(warehouse, since)

    def _hand_to_canary(
        self, registry: ModelRegistry, outcome: TrainOutcome, retrain: Retrain
    ) -> str:
        """Put a retrained version in canary; returns the action. Only the model's very first
        version, with no champion to compare it against, is promoted at once."""
        return hand_to_canary(registry, outcome.model, outcome.version, retrain.reason)

    def _reap(self, consumer: Consumer, warehouse: Warehouse, registry: ModelRegistry) -> None:
        finished = False
        while True:
            try:
                model = self._done.get_nowait()
            except queue.Empty:
                break
            finished = True
            self._last_finish = time.monotonic()
            following = self.retrains.finish(model)
            if following is not None:
                self._start(following, warehouse, registry)
        if finished:
            self._commit(consumer)

    def _commit(self, consumer: Consumer) -> None:
        name = self.settings.topic("retrain-requests")
        offsets = [TopicPartition(name, p, o) for p, o in self.retrains.committable().items()]
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as error:  # the next commit covers these offsets too
                log.warning("retrain worker: committing failed (%s); retried with the next", error)


def labelled_rows_since(warehouse: Warehouse, since_ms: int) -> int:
    """Labels in the warehouse for events from ``since_ms`` on."""
    result = warehouse.query(
        f"SELECT count() AS n FROM {warehouse.database}.labels FINAL "
        f"WHERE event_time_ms >= {int(since_ms)}"
    ).dicts()
    return int(result[0]["n"]) if result else 0


def hand_to_canary(registry: ModelRegistry, model: str, version: int, reason: str) -> str:
    """Put ``model@version`` in canary, or promote it if it is the model's only version and
    there is no champion; returns the action taken."""
    state = registry.catch_up()
    others = [v.version for v in state.versions(model) if v.version != version]
    if not others and state.champion(model) is None:
        why = "first version of the model: no champion to compare it against"
        registry.promote(model, version, reason=why, actor=ACTOR)
        log.info("promoted %s@%d at once: %s", model, version, why)
        return "promoted"
    if state.version(model, version).stage != "registered":
        stage = state.version(model, version).stage
        log.info("%s@%d is already %s by the canary controller", model, version, stage)
        return stage
    try:
        registry.canary(model, version, reason=reason, actor=ACTOR)
    except IllegalTransition as error:  # the controller decided meanwhile
        log.info("%s@%d: the canary controller decided first (%s)", model, version, error)
        return registry.state.version(model, version).stage
    log.info(
        "handed %s@%d to the canary (champion %s): %s",
        model,
        version,
        state.champion(model),
        reason,
    )
    return "canary"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m headwater.trainers.retrain``: run the retrain worker until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m headwater.trainers.retrain")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="local trial workers kept running (default 0: the standing trial workers that "
        "`headwater up` runs, or trial-worker replicas)",
    )
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    configure_logging("retrain_worker")
    settings = load_settings()
    worker = RetrainWorker(settings, trial_workers=args.workers, epochs=args.epochs)
    return run_until_sigterm(worker, settings, "retrain worker")


if __name__ == "__main__":
    sys.exit(main())
