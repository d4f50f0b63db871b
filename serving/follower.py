"""Following a topic live from its beginning: the scoring processes' view of ``routing`` and
``model-versions``.

A :class:`TopicFollower` reads every partition of one topic from the start on a background
thread, decodes each record into its event model and hands it to ``on_event``. It never commits
(each process rebuilds its view from the log) and says when it has caught up with the end of
the log as it was at start, so a scorer can wait for its routing before taking traffic.
Malformed records go to ``deadletter`` with the reason and their bytes; they never stop it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, TopicPartition
from pydantic import ValidationError

from headwater.core.errors import BrokerUnavailable, HeadwaterError
from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus, make_codec
from headwater.infra.kafka_clients import cluster_metadata, make_consumer
from headwater.schemas.dead_letters import dead_letter
from headwater.schemas.models import EventModel

E = TypeVar("E", bound=EventModel)


class TopicFollower(Generic[E]):
    """Feeds every record of ``topic`` (as ``model``) to ``on_event(event, partition, offset)``,
    live, on a thread."""

    def __init__(
        self,
        settings: HeadwaterSettings,
        topic: str,
        model: type[E],
        on_event: Callable[[E, int, int], None],
        *,
        deadletters: EventBus | None = None,
        poll_s: float = 0.2,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.model = model
        self.on_event = on_event
        self.deadletters = deadletters
        self.poll_s = poll_s
        self.caught_up = threading.Event()
        self.failure: str = ""
        self.bad_records = 0
        self._stop = threading.Event()
        self._codec = make_codec(settings)
        self._thread = threading.Thread(target=self._run, name=f"follow-{topic}", daemon=True)

    def start(self, wait_s: float | None = None) -> TopicFollower[E]:
        """Start following; with ``wait_s``, wait until the log's current end was read."""
        self._thread.start()
        if wait_s is not None and not self.caught_up.wait(wait_s):
            raise BrokerUnavailable(
                f"reading topic {self.settings.topic(self.topic)} did not reach its end within "
                f"{wait_s:g} s{': ' + self.failure if self.failure else ''}"
            )
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.settings.kafka_timeout_s)

    def _run(self) -> None:
        name = self.settings.topic(self.topic)
        try:
            partitions = sorted(cluster_metadata(self.settings).topics[name].partitions)
        except (KeyError, HeadwaterError) as error:
            self.failure = f"topic {name} unavailable: {error}"
            return
        consumer = make_consumer(
            self.settings,
            f"headwater-follow-{self.topic}-{uuid.uuid4().hex[:8]}",
            **{"enable.partition.eof": True},
        )
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        try:
            while not self._stop.is_set():
                message = consumer.poll(self.poll_s)
                if message is None:
                    continue
                problem = message.error()
                if problem is not None and problem.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition() or 0)
                    if at_end.issuperset(partitions):
                        self.caught_up.set()
                elif problem is not None:
                    self.failure = f"reading {name}: {problem.str()}"
                    time.sleep(self.poll_s)  # transient broker trouble: librdkafka retries
                else:
                    self._handle(message)
        finally:
            consumer.close()

    def _handle(self, message: Message) -> None:
        value = message.value() or b""
        try:
            _, record = self._codec.decode(value, self.model.SCHEMA)
            event = self.model.from_avro(record)
        except (HeadwaterError, ValidationError, ValueError) as error:
            self._dead_letter(message, "undecodable", str(error))
            return
        try:
            self.on_event(event, message.partition() or 0, message.offset() or 0)
        except HeadwaterError as error:
            self._dead_letter(message, "rejected", str(error))
        except Exception as error:  # a bug in a handler must not end the following
            self._dead_letter(message, "handler_failed", f"{type(error).__name__}: {error}")

    def _dead_letter(self, message: Message, code: str, reason: str) -> None:
        self.bad_records += 1
        if self.deadletters is None:
            return
        self.deadletters.send(
            "deadletter",
            dead_letter(
                message.topic() or self.topic,
                message.partition() or 0,
                message.offset() or 0,
                code,
                f"{self.model.__name__} record: {reason}",
                message.key(),
                message.value(),
            ),
        )
        self.deadletters.flush()
