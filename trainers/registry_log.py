"""The ``model-versions`` log as registry writers see it, and why version numbers stay unique.

A version number is allocated by reading the log and taking the next free number, which two
writers with the same view would both take. So every registration runs under a *fence*: a Kafka
transactional producer whose ``transactional.id`` names the model. Starting it
(``init_transactions``) fences every earlier writer of that model and lets their open
transactions finish first; the writer then reads the log to its end, allocates the next number
and commits. A writer fenced in between (another started after it) cannot commit, and the
platform's readers (all read-committed) never see what it tried: it catches up and takes the
next number. The registry confirms a registration by reading it back.

:class:`RegistryLog` is the seam; :class:`KafkaRegistryLog` is the broker's, and
:class:`MemoryLog` is an in-memory log with the same fencing rule for unit tests:

>>> from headwater.schemas.models import ModelVersion
>>> log = MemoryLog()
>>> a, b = log.writer(), log.writer()
>>> fence_a = a.fence("m")
>>> fence_b = b.fence("m")  # b started later: a is fenced
>>> event = ModelVersion(model="m", version=1, action="registered", event_time_ms=1)
>>> fence_b.commit(event)
>>> try:
...     fence_a.commit(event)
... except RegistrationFenced as error:
...     print(error)
m: another writer registered a version of it since this one started
>>> [e.version for e in a.read_new()]
[1]
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from headwater.core.errors import BrokerUnavailable
from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import make_codec
from headwater.infra.kafka_clients import make_producer
from headwater.schemas.models import ModelVersion
from headwater.schemas.topics import topic_spec
from headwater.trainers.errors import RegistryError
from headwater.trainers.topic_log import TopicTail, decode_records

TOPIC = "model-versions"


class RegistrationFenced(RegistryError):
    """Another writer started registering a version of the same model after this one."""


class Fence(Protocol):
    """The right to register one version of one model, until another writer takes it."""

    def commit(self, event: ModelVersion) -> None:
        """Append ``event`` to the log, or raise :class:`RegistrationFenced`."""
        ...


class RegistryLog(Protocol):
    """What a registry writer needs from ``model-versions``."""

    def read_new(self) -> list[ModelVersion]:
        """Every event appended since the last call, up to the log's end as of this call."""
        ...

    def fence(self, model: str) -> Fence:
        """Fence every other writer of ``model``; take the fence before catching up."""
        ...


# -- in memory ---------------------------------------------------------------------------------


@dataclass
class MemoryLog:
    """A shared in-memory ``model-versions`` with Kafka's fencing rule (for unit tests)."""

    events: list[ModelVersion] = field(default_factory=list)
    epochs: dict[str, int] = field(default_factory=dict)

    def writer(self) -> MemoryLogWriter:
        """One writer's view: its own read position."""
        return MemoryLogWriter(self)


@dataclass
class _MemoryFence:
    log: MemoryLog
    model: str
    epoch: int

    def commit(self, event: ModelVersion) -> None:
        if self.log.epochs[self.model] != self.epoch:
            raise RegistrationFenced(
                f"{self.model}: another writer registered a version of it since this one started"
            )
        self.log.events.append(event)


@dataclass
class MemoryLogWriter:
    """One writer of a :class:`MemoryLog`: its read position; it publishes to the log too."""

    log: MemoryLog
    position: int = 0

    def send(self, topic: str, event: ModelVersion) -> None:
        self.log.events.append(event)

    def flush(self, timeout_s: float | None = None) -> None:
        return None

    def read_new(self) -> list[ModelVersion]:
        new = self.log.events[self.position :]
        self.position = len(self.log.events)
        return list(new)

    def fence(self, model: str) -> Fence:
        epoch = self.log.epochs.get(model, 0) + 1
        self.log.epochs[model] = epoch
        return _MemoryFence(self.log, model, epoch)


# -- on the broker -----------------------------------------------------------------------------


class KafkaRegistryLog:
    """``model-versions`` on the broker: a read-committed tail and one fence per model."""

    def __init__(self, settings: HeadwaterSettings) -> None:
        self.settings = settings
        self.undecodable: list[str] = []
        self._tail = TopicTail(settings, TOPIC)

    def read_new(self) -> list[ModelVersion]:
        good, bad = decode_records(self.settings, self._tail.read_new(), ModelVersion)
        self.undecodable += [f"{r.partition}@{r.offset}: {why}" for r, why in bad]
        # Versions of one model live on different partitions (keyed model@version): event time
        # orders them, as a replay does.
        good.sort(key=lambda pair: (pair[1].event_time_ms, pair[0].partition, pair[0].offset))
        return [event for _, event in good]

    def fence(self, model: str) -> Fence:
        transactional_id = f"{self.settings.topic_prefix}headwater-registry-{model}"
        producer = make_producer(self.settings, **{"transactional.id": transactional_id})
        try:
            producer.init_transactions(self.settings.kafka_timeout_s * 3)
        except KafkaException as error:
            raise BrokerUnavailable(
                f"registering a version of {model}: starting transactional producer "
                f"{transactional_id} on {self.settings.bootstrap_servers} failed: {error}"
            ) from None
        return _KafkaFence(self.settings, producer, model)

    def close(self) -> None:
        self._tail.close()


class _KafkaFence:
    def __init__(self, settings: HeadwaterSettings, producer: Producer, model: str) -> None:
        self.settings = settings
        self.producer = producer
        self.model = model

    def commit(self, event: ModelVersion) -> None:
        record = event.to_avro()
        value = make_codec(self.settings).encode(ModelVersion.SCHEMA, record)
        key = topic_spec(TOPIC).key_of(record).encode()
        timeout = self.settings.kafka_timeout_s * 3
        try:
            self.producer.begin_transaction()
            self.producer.produce(self.settings.topic(TOPIC), value, key)
            self.producer.commit_transaction(timeout)
        except KafkaException as exception:
            error: KafkaError = exception.args[0]
            if error.txn_requires_abort():
                self._abort()
            if error.fatal() or error.code() in _FENCED or error.txn_requires_abort():
                raise RegistrationFenced(
                    f"{event.model}@{event.version}: another writer registered a version of "
                    f"{event.model} since this one started ({error.str()})"
                ) from None
            raise BrokerUnavailable(
                f"registering {event.model}@{event.version} on "
                f"{self.settings.bootstrap_servers}: {error.str()}"
            ) from None

    def _abort(self) -> None:
        # A fenced producer cannot abort; the writer that fenced it aborted its transaction.
        with contextlib.suppress(KafkaException):
            self.producer.abort_transaction(self.settings.kafka_timeout_s)


_FENCED = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
}
