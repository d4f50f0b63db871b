"""The thin Kafka side of the loop's agents: consume typed events in batches, hand them to a
pure handler, produce what it returns, and commit the input offsets only after the broker
acknowledged every output (at-least-once; the handlers' outputs carry deterministic ids so a
replay is recognisable).

A record that does not decode into its topic's model goes to ``deadletter`` with the reason and
its original bytes, counted in :attr:`AgentStats.deadlettered`; it never stops the agent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from pydantic import ValidationError

from headwater.core.errors import BrokerUnavailable, SchemaError
from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import consumer_error_is_fatal, make_consumer
from headwater.infra.metrics import METRICS
from headwater.schemas.dead_letters import dead_letter
from headwater.schemas.models import EventModel
from headwater.schemas.topics import topic_spec

log = logging.getLogger("headwater.loop.agent_runner")

Output = tuple[str, EventModel]


class Handler(Protocol):
    """What an agent runs: events in, events out; no Kafka."""

    topics: Sequence[str]

    def handle(self, topic: str, event: EventModel) -> list[Output]: ...

    def on_tick(self, now_ms: int) -> list[Output]: ...


@dataclass
class AgentStats:
    consumed: int = 0
    produced: int = 0
    deadlettered: int = 0
    batches: int = 0


def _now_ms() -> int:
    return int(time.time() * 1000)


class AgentRunner:
    """Runs one :class:`Handler` on the broker until :meth:`stop` (on a thread or inline)."""

    def __init__(
        self,
        settings: HeadwaterSettings,
        handler: Handler,
        group: str,
        *,
        batch_size: int = 500,
        poll_s: float = 0.2,
        from_beginning: bool = True,
        observe_inputs: Collection[str] = (),
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.group = group
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.stats = AgentStats()
        self._from_beginning = from_beginning
        # Input topics whose events feed this process's metrics (e.g. every scorer's predictions
        # seen by the loop: platform-wide latency histograms); one runner per process each.
        self._observe_inputs = frozenset(observe_inputs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> AgentRunner:
        self._thread = threading.Thread(target=self._run_guarded, name=self.group, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self.error is not None:
            raise BrokerUnavailable(f"agent {self.group} failed: {self.error}") from self.error

    def _run_guarded(self) -> None:
        try:
            self.run()
        except BaseException as error:  # surfaced by stop(): a thread must not die silently
            self.error = error

    def run(self) -> None:
        reset = "earliest" if self._from_beginning else "latest"
        consumer = make_consumer(self.settings, self.group, **{"auto.offset.reset": reset})
        consumer.subscribe([self.settings.topic(t) for t in self.handler.topics])
        names = {self.settings.topic(t): t for t in self.handler.topics}
        bus = EventBus(self.settings)
        try:
            while not self._stop.is_set():
                messages = consumer.consume(self.batch_size, self.poll_s)
                started = time.perf_counter()
                outputs: list[Output] = []
                for message in messages:
                    outputs += self._one(bus, names, message)
                outputs += self.handler.on_tick(_now_ms())
                for topic, event in outputs:
                    bus.send(topic, event)
                bus.flush()  # outputs acknowledged before the inputs are committed
                self.stats.produced += len(outputs)
                if messages:
                    self._commit(consumer)
                    self.stats.batches += 1
                self._record(names, messages, outputs, time.perf_counter() - started)
        finally:
            consumer.close()

    def _commit(self, consumer: Consumer) -> None:
        """Commit what was consumed; while the broker is away, the next batch's commit covers
        this one (its outputs are acknowledged already: only a crash would re-read them)."""
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as error:
            log.warning(
                "agent %s: committing failed (%s); retried with the next batch", self.group, error
            )

    def _record(
        self, names: dict[str, str], messages: list[Message], outputs: list[Output], took: float
    ) -> None:
        """Inputs per topic and the batch's time under the agent's name; every output through
        :meth:`~headwater.infra.metrics.PlatformMetrics.observe` (drift statistics, routing weights,
        live quality, retrain requests, model-version actions, dead letters)."""
        for topic, event in outputs:
            METRICS.observe(topic, event)
        if not messages:
            return
        stage = self.group.removeprefix(self.settings.topic_prefix)
        per_topic: dict[str, int] = {}
        for message in messages:
            topic = names.get(message.topic() or "", message.topic() or "")
            per_topic[topic] = per_topic.get(topic, 0) + 1
        for topic, count in per_topic.items():
            METRICS.records.labels(topic=topic, stage=stage).inc(count)
        METRICS.batch_duration.labels(stage=stage).observe(took)
        METRICS.batch_size.labels(stage=stage).observe(len(messages))

    def _one(self, bus: EventBus, names: dict[str, str], message: Message) -> list[Output]:
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                return []
            if consumer_error_is_fatal(error):
                raise BrokerUnavailable(f"agent {self.group}: {error.str()}")
            log.warning("agent %s: %s (retrying)", self.group, error.str())
            return []
        self.stats.consumed += 1
        topic = names.get(message.topic() or "", message.topic() or "")
        model = topic_spec(topic).model
        value = message.value() or b""
        try:
            if model is None:
                raise SchemaError(f"{topic} has no platform schema")
            _, record = bus.codec.decode(value, model.SCHEMA)
            event = model.from_avro(record)
        except (SchemaError, ValidationError) as problem:
            self.stats.deadlettered += 1
            dead = dead_letter(
                topic,
                message.partition() or 0,
                message.offset() or 0,
                "undecodable",
                f"agent {self.group}: {problem}",
                message.key(),
                value,
                _now_ms(),
            )
            return [("deadletter", dead)]
        if topic in self._observe_inputs:
            METRICS.observe(topic, event)
        return self.handler.handle(topic, event)
