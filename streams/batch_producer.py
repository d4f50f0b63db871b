"""Producing a batch's records with librdkafka and waiting until the broker has them all.

The feature worker hands each batch's outputs here instead of to Faust's pure-Python producer:
``produce`` costs a few microseconds a record. :meth:`BatchProducer.wait` blocks until the
broker acknowledged them; :meth:`BatchProducer.confirm` waits in a thread, so an event loop
(Faust's) keeps fetching meanwhile. Records sent with an :class:`Acks` are counted as the
broker acknowledges them, so a caller can go on with its next batch and learn later, without
waiting, which of its batches are complete.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Collection, Iterable

from confluent_kafka import KafkaError, KafkaException, Message

from headwater.core.errors import BrokerUnavailable, RecordRefused
from headwater.core.settings import HeadwaterSettings
from headwater.infra.kafka_clients import make_producer, refuses_the_record

Headers = list[tuple[str, str | bytes | None]] | None
# topic, key, value (None: a tombstone), partition (-1: the partitioner's pick by key), headers
Record = tuple[str, bytes, bytes | None, int, Headers]
Refused = Callable[[int, str], None]  # the index of a refused record, and why


class Acks:
    """The delivery reports of one group of records (a batch's outputs, say): how many were
    sent, how many the broker acknowledged, and the errors of those it failed.

    >>> acks = Acks()
    >>> acks.sent = 2
    >>> acks(None, None); acks.complete
    False
    >>> acks(None, None); acks.complete
    True
    """

    __slots__ = ("errors", "reported", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.reported = 0
        self.errors: list[str] = []

    def __call__(self, error: KafkaError | None, message: Message | None) -> None:
        self.reported += 1
        if error is not None:
            where = "" if message is None else f"{message.topic()}[{message.partition()}]: "
            self.errors.append(f"{where}{error.str()}")

    @property
    def complete(self) -> bool:
        """Every record sent is reported (acknowledged, or failed: see :attr:`errors`)."""
        return self.reported == self.sent


class BatchProducer:
    """An idempotent librdkafka producer whose batches are confirmed as a whole.

    Records of ``prompt_topics`` (the feature worker's predictions, when it scores) go through
    a second producer of their own, with its own connection and no linger: a caller waits on
    them. The rest share the first, whose linger lets consecutive batches share requests.
    """

    def __init__(self, settings: HeadwaterSettings, prompt_topics: Collection[str] = ()) -> None:
        # A report of every record: a flush returns as soon as the last one is acknowledged
        # (with reports of failures only it slept in 10 ms polls past that), and records sent
        # with an Acks are counted per batch. linger.ms 2: the feature worker no longer
        # flushes each batch out, and under load a batch (of several topics and partitions, a
        # request each) left every few milliseconds. Waiting 2 ms lets consecutive batches share
        # requests; the broker, on the same cores, answers fewer of them sooner: event ->
        # prediction p50 14.4-15.3 ms against 16.2-18.0, p99 40-49 against 54-104, with 1.5-3
        # against 0.5 (bench_serving's inline part, interleaved; 5 was worse again).
        self._bulk = make_producer(
            settings,
            **{
                "linger.ms": 2,
                "batch.num.messages": 10_000,
                "on_delivery": self._on_delivery,
            },
        )
        # The prompt lane. Every batch's predictions waited out that linger behind the batch's
        # events and features (one request per partition, librdkafka issue #1700), while the
        # events and features have no one waiting on them. Their own producer, unlingered, as
        # the standalone scorer's: event -> prediction p50 5.1-5.3 ms against 6.5-6.9 with
        # one producer (bench_serving's inline part, 3 runs each, p99 alike: 12-15 ms); all
        # unlingered on one producer gave p50 5.4-6.1 and p99 16-20 (the broker answers ~3x
        # the requests).
        self._prompt_topics = frozenset(prompt_topics)
        self._prompt = self._bulk
        if self._prompt_topics:
            self._prompt = make_producer(
                settings,
                **{"linger.ms": 0, "socket.nagle.disable": True, "on_delivery": self._on_delivery},
            )
        self._lanes = (self._bulk,) if self._prompt is self._bulk else (self._bulk, self._prompt)
        self._timeout_s = settings.kafka_timeout_s * 3
        self._address = settings.bootstrap_servers
        self._errors: list[str] = []

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._errors.append(f"{message.topic()}[{message.partition()}]: {error.str()}")

    def send(
        self, records: Iterable[Record], refused: Refused | None = None, acks: Acks | None = None
    ) -> int:
        """Produce ``records``; one the producer refuses (its size, say) is handed to
        ``refused`` with its index and the reason, or without ``refused`` fails the batch
        naming it. With ``acks``, their delivery reports are counted there (served by
        :meth:`poll` and :meth:`wait`). Returns how many were produced."""
        count, report = 0, acks or self._on_delivery
        bulk, prompt, prompt_topics = self._bulk, self._prompt, self._prompt_topics
        handed_prompt = False
        for index, (topic, key, value, partition, headers) in enumerate(records):
            producer = prompt if topic in prompt_topics else bulk
            if producer is not bulk:
                handed_prompt = True
            elif handed_prompt:
                # The prompt lane's records are handed over: its thread, just woken to send
                # them, gets this core before the rest of the batch is produced. On 2 cores
                # shared with the broker it otherwise waited behind this thread: event ->
                # prediction p99 7.5-8.9 ms against 11.7-13.5 (bench_serving's inline part,
                # 4 runs each, two pairs interleaved; p50 alike), one load in 4 with a stall.
                handed_prompt = False
                os.sched_yield()
            while True:
                try:
                    producer.produce(
                        topic, value, key, partition, on_delivery=report, headers=headers
                    )
                    count += 1
                    if acks is not None:
                        acks.sent += 1
                    break
                except BufferError:
                    producer.poll(0.01)  # the local queue is full: let deliveries drain
                except KafkaException as error:
                    problem = error.args[0]
                    if not isinstance(problem, KafkaError) or not refuses_the_record(problem):
                        raise BrokerUnavailable(f"producing to {topic}: {error}") from None
                    reason = (
                        f"{topic} refused a record of {len(value or b'')} bytes: {problem.str()}"
                    )
                    if refused is None:
                        raise RecordRefused(reason) from None
                    refused(index, reason)
                    break
        self.poll(0)
        return count

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve the delivery reports that have arrived (waiting up to ``timeout_s`` for one)."""
        for lane in self._lanes:  # the bulk lane first, without waiting: the prompt one waits
            lane.poll(timeout_s if lane is self._prompt else 0)

    def wait(self) -> None:
        """Return once every record sent so far is acknowledged; fail naming the broker."""
        left = sum(int(lane.flush(self._timeout_s)) for lane in self._lanes)
        if left or self._errors:
            errors, self._errors = self._errors, []
            raise BrokerUnavailable(
                f"{left} record(s) unacknowledged and {len(errors)} failed at {self._address}: "
                f"{errors[:3]}"
            )

    async def confirm(self) -> None:
        """:meth:`wait` without blocking the event loop."""
        await asyncio.to_thread(self.wait)
