"""The feature worker on librdkafka (``HEADWATER_STREAM_ENGINE=librdkafka``, the default).

One confluent-kafka consumer in the group ``<prefix>headwater-features`` takes what has arrived
(up to ``BATCH_MAX`` records) while librdkafka's own threads prefetch the next ones. Entity
states live in a :class:`ChangelogStore`: when a partition of ``events.raw`` is assigned, the
same partition of the changelog is read to its end first; when it is revoked, its offsets are
committed and its states dropped. Assignment is cooperative-sticky, so a rebalance only moves
(and recovers) the partitions that change hands.

The order per batch is unchanged: its outputs are acknowledged before its changed states are
sent, and its states before its offsets are committed (asynchronously: a lost commit only means
the batch is re-read, and its events are skipped by the recovered states' source offsets). But
nothing waits for the broker: a batch's outputs (its predictions too, in the worker that
scores) are produced as soon as it is computed, and the loop takes the next batch at once.
Delivery reports are counted per batch (:class:`Acks`); each step serves those that arrived,
sends the states of the batches whose outputs are all acknowledged (in batch order, so an
entity's states land in order) and commits the offsets of those whose states are, at most every
``COMMIT_EVERY_S`` (as Kafka Streams' ``commit.interval.ms``): a commit per batch, hundreds a
second under load, was a request and a log append each for the broker that also carries the
predictions, and measurably slowed them (event -> prediction p50 18.7 against 15.9 ms, p99 68
against 49, three interleaved runs of bench_serving's inline part). States go the same way, as
Kafka Streams' record cache does: those of the batches acknowledged within ``STATES_EVERY_S``
are sent together, an entity's latest state only, so the changelog costs the broker a request
per partition every ``STATES_EVERY_S`` rather than per batch. A batch waits for the broker only
when ``MAX_IN_FLIGHT`` batches' outputs are unacknowledged, when the stream is idle, or when its
partitions are revoked; a record unacknowledged past the producer's ``message.timeout.ms`` is
reported failed, and fails the worker naming the broker. Waiting for each batch's
acknowledgement before taking the next one left every event queued behind a broker round trip.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import FrameType

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from headwater.core.errors import BrokerUnavailable
from headwater.core.settings import HeadwaterSettings
from headwater.infra.kafka_clients import (
    COMPACTED,
    cluster_metadata,
    create_topics,
    make_consumer,
    new_topic,
)
from headwater.streams.batch_producer import Acks, Record
from headwater.streams.changelog import ChangelogStore, read_from_beginning
from headwater.streams.idle import IdleExpiry
from headwater.streams.pipeline import BatchOutput, RawRecord
from headwater.streams.worker import (
    BATCH_MAX,
    BATCH_WITHIN_S,
    BatchScoring,
    FeatureBatches,
    app_id,
)

log = logging.getLogger("headwater.streams.rdkafka_engine")

REPORT_EVERY_S = 5.0
# Batches whose outputs are not yet acknowledged, at most: beyond them the worker waits for
# the broker.
MAX_IN_FLIGHT = 8
# Acknowledged batches' states are sent together at most this often. Sent per batch, the
# changelog was a quarter of the worker's produce requests (librdkafka sends a request per
# partition); grouped, event -> prediction went from p50 7.6/8.5 to 7.3/7.4 ms and p99 18/24 to
# 16/18 ms (bench_serving's inline part, two interleaved pairs). Offsets commit behind it.
STATES_EVERY_S = 0.05
IN_FLIGHT_POLL_S = 0.001  # with batches in flight: how long a step waits for news
SLOW_ACKS_S = 0.25  # a wait for the broker's acknowledgements this long is logged
COMMIT_EVERY_S = 0.1  # completed batches' offsets are committed at most this often


class RdkafkaFeatureWorker:
    """The consume → compute → produce → commit loop; :meth:`run` until :meth:`stop`."""

    def __init__(self, settings: HeadwaterSettings, scoring: BatchScoring | None = None) -> None:
        self.settings = settings
        self.batches = FeatureBatches(settings, scoring)
        self._next: dict[int, int] = {}  # partition -> next offset handed to the broker to commit
        self._completed: dict[int, int] = {}  # the same, of batches completed since
        self._committed_at = 0.0  # time.monotonic() of the last commit
        self._states_sent_at = 0.0  # time.monotonic() of the last states sent
        # Idle states are evicted only behind the offsets handed to the broker to commit.
        idle = IdleExpiry(settings.entity_idle_ttl_ms, committed=self._next)
        self.store = ChangelogStore(self.batches.feature_set, idle=idle)
        self.raw_topic = settings.topic("events.raw")
        self.changelog = self.batches.changelog
        self._ensure_changelog()
        self.consumer = make_consumer(
            settings,
            app_id(settings),
            **{
                "partition.assignment.strategy": "cooperative-sticky",
                "fetch.wait.max.ms": 100,
                "queued.max.messages.kbytes": 16384,
            },
        )
        self._flights: deque[_InFlight] = deque()  # computed, not yet committed, in order
        self._address = settings.bootstrap_servers
        self._stopping = False

    def _ensure_changelog(self) -> None:
        """Create the changelog, co-partitioned with ``events.raw``, if it doesn't exist."""
        raw = cluster_metadata(self.settings).topics.get(self.raw_topic)
        if raw is None or raw.error is not None:
            raise BrokerUnavailable(
                f"topic {self.raw_topic} does not exist at {self.settings.bootstrap_servers}; "
                "`headwater up` creates the platform's topics"
            )
        topic = new_topic(self.settings, self.changelog, len(raw.partitions), COMPACTED)
        create_topics(self.settings, [topic])

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        owned = sorted(tp.partition for tp in partitions)
        if not owned:
            return
        started = time.perf_counter()
        reader = make_consumer(self.settings, f"{app_id(self.settings)}-restore")
        try:
            timeout = self.settings.kafka_timeout_s * 6
            states = read_from_beginning(reader, self.changelog, owned, timeout)
            restored = self.store.restore(states)
        finally:
            reader.close()
        log.info(
            "assigned %s[%s]: %d state record(s) recovered in %.2f s; %d entities held",
            self.raw_topic,
            ",".join(map(str, owned)),
            restored,
            time.perf_counter() - started,
            len(self.store),
        )

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self._finish()  # no state of a batch in flight may land after the partition moved
        self._commit(gone, asynchronous=False)
        for partition in gone:
            self._next.pop(partition, None)
        dropped = self.store.drop(gone)
        log.info("revoked %s%s: %d entities dropped", self.raw_topic, sorted(gone), dropped)

    def _commit(self, partitions: set[int] | None = None, asynchronous: bool = True) -> None:
        """Commit the offsets of the completed batches (of ``partitions``, or all)."""
        for partition in [p for p in self._completed if partitions is None or p in partitions]:
            self._next[partition] = self._completed.pop(partition)
        self._committed_at = time.monotonic()
        offsets = [
            TopicPartition(self.raw_topic, p, offset)
            for p, offset in self._next.items()
            if partitions is None or p in partitions
        ]
        if not offsets:
            return
        try:
            if asynchronous:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as error:  # a failed commit only means re-reading; never fatal
            log.warning("committing %s failed: %s", offsets, error)

    def _records(self, messages: list[Message]) -> list[RawRecord]:
        batch = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                if error.fatal() or error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise BrokerUnavailable(f"consuming {self.raw_topic}: {error.str()}")
                log.warning("consuming %s: %s", self.raw_topic, error.str())
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            batch.append(RawRecord(partition, offset, message.key(), message.value()))
        return batch

    def _take(self, timeout_s: float) -> list[Message]:
        """What has arrived, up to ``BATCH_MAX``; if nothing has, the first record to arrive
        within ``timeout_s`` and whatever came with it. Batches grow with the load on their own
        (records queue up while the previous batch is confirmed) and an idle stream is served
        without waiting for a batch to fill."""
        consume = self.consumer.consume
        messages = consume(BATCH_MAX, timeout=0)
        if not messages:
            messages = consume(1, timeout=timeout_s)
            if messages:
                messages += consume(BATCH_MAX - 1, timeout=0)
        return messages

    def step(self, timeout_s: float = BATCH_WITHIN_S) -> int:
        """Process one batch (waiting up to ``timeout_s`` for one); returns its size. With
        batches in flight it waits at most a millisecond, serving their acknowledgements."""
        batch = self._records(self._take(IN_FLIGHT_POLL_S if self._flights else timeout_s))
        if batch:
            batches = self.batches
            started = time.perf_counter()
            out = batches.compute(batch, self.store)
            computed, outputs_acked = time.perf_counter(), Acks()
            batches.send_outputs(out, outputs_acked)  # first: the states are not awaited
            states = batches.state_records(out, self.store)
            offsets = _next_offsets(batch)
            self._flights.append(
                _InFlight(len(batch), out, states, offsets, started, computed, outputs_acked)
            )
        self.batches.producer.poll(0)
        self._advance()
        if self._completed and time.monotonic() - self._committed_at >= COMMIT_EVERY_S:
            self._commit()
        if self._unacknowledged() >= MAX_IN_FLIGHT:  # the broker is behind: let it catch up
            self._catch_up()
        return len(batch)

    def _catch_up(self) -> None:
        """Wait until fewer than ``MAX_IN_FLIGHT`` batches' outputs are unacknowledged; a wait
        past ``SLOW_ACKS_S`` is logged, naming the broker (events queue up meanwhile)."""
        began = time.monotonic()
        while self._unacknowledged() >= MAX_IN_FLIGHT:
            self.batches.producer.poll(IN_FLIGHT_POLL_S)
            self._advance()
        waited = time.monotonic() - began
        if waited >= SLOW_ACKS_S:
            log.warning(
                "waited %.0f ms for %s to acknowledge the outputs of %d batches",
                waited * 1000,
                self._address,
                MAX_IN_FLIGHT,
            )

    def _unacknowledged(self) -> int:
        """How many batches in flight still wait for their outputs' acknowledgement."""
        return sum(1 for flight in self._flights if not flight.outputs_acked.complete)

    def _advance(self, flush: bool = False) -> None:
        """Move the batches in flight on as far as their acknowledgements allow: send the
        states of those whose outputs are acknowledged (every ``STATES_EVERY_S``, or now with
        ``flush``), and complete those whose states are (their offsets are committed by
        :meth:`step`, every ``COMMIT_EVERY_S``)."""
        # A record the broker never acknowledges is reported failed after the producer's
        # message.timeout.ms (make_producer), and so fails its batch here, naming the broker.
        ready: list[_InFlight] = []
        for flight in self._flights:
            flight.raise_failures(self._address)
            if flight.states_acked is None:
                if not flight.outputs_acked.complete:
                    break  # states go in batch order
                ready.append(flight)
        if ready and (flush or time.monotonic() - self._states_sent_at >= STATES_EVERY_S):
            self._send_states(ready)
        while self._flights and (acked := self._flights[0].states_acked) is not None:
            flight = self._flights[0]
            flight.raise_failures(self._address)
            if not acked.complete:
                break
            self._flights.popleft()
            self.batches.done(flight.size, flight.out, flight.started, flight.computed)
            self._completed.update(flight.offsets)

    def _send_states(self, ready: list[_InFlight]) -> None:
        """Send the states of ``ready`` batches (consecutive, in order) as one group; the
        group's batches complete together, once every record of it is acknowledged."""
        acks = Acks()
        for flight in ready:
            flight.states_acked = acks
        self.batches.producer.send(latest_states(f.states for f in ready), acks=acks)
        self._states_sent_at = time.monotonic()

    def _finish(self) -> None:
        """Complete whatever is in flight: acknowledge, send the last states (the caller
        commits their offsets)."""
        while self._flights:
            self.batches.producer.wait()
            self._advance(flush=True)

    def run(self) -> None:
        self.consumer.subscribe([self.raw_topic], on_assign=self._assigned, on_revoke=self._revoked)
        reported = time.monotonic()
        try:
            while not self._stopping:
                self.step()
                if time.monotonic() - reported >= REPORT_EVERY_S:
                    reported = time.monotonic()
                    log.info("feature worker: %s", self.batches.counters)
        finally:
            try:
                self._finish()
            finally:
                self._commit(asynchronous=False)
                self.consumer.close()
            log.info("feature worker stopped: %s", self.batches.counters)

    def stop(self, *_: object) -> None:
        self._stopping = True


@dataclass
class _InFlight:
    """A batch between its computation and its commit."""

    size: int
    out: BatchOutput
    states: list[Record]  # its changed states as they were at its end
    offsets: dict[int, int]  # partition -> next offset to commit
    started: float
    computed: float
    outputs_acked: Acks = field(default_factory=Acks)
    states_acked: Acks | None = None  # once its states are sent

    def raise_failures(self, address: str) -> None:
        """Fail naming the broker if the broker failed any of its records."""
        for acks in (self.outputs_acked, self.states_acked):
            if acks is not None and acks.errors:
                raise BrokerUnavailable(
                    f"{len(acks.errors)} record(s) of a batch failed at {address}: "
                    f"{acks.errors[:3]}"
                )


def latest_states(batches: Iterable[list[Record]]) -> list[Record]:
    """The changelog records of consecutive batches' states, an entity's last only (its state
    or its tombstone, as the last batch that changed it left it): the compacted changelog
    keeps no more than that, and a restart restores no more.

    >>> first = [("log", b"card-1", b"s1", 0, None), ("log", b"card-2", b"s2", 1, None)]
    >>> second = [("log", b"card-1", b"s1'", 0, None), ("log", b"card-2", None, 1, None)]
    >>> [(key, value) for _, key, value, _, _ in latest_states([first, second])]
    [(b'card-1', b"s1'"), (b'card-2', None)]
    """
    latest: dict[tuple[str, bytes, int], Record] = {}
    for states in batches:
        for record in states:
            topic, key, _, partition, _ = record
            latest[topic, key, partition] = record
    return list(latest.values())


def _next_offsets(batch: list[RawRecord]) -> dict[int, int]:
    offsets = {}
    for record in batch:
        offsets[record.partition] = record.offset + 1
    return offsets


def run_rdkafka_worker(settings: HeadwaterSettings, scoring: BatchScoring | None = None) -> None:
    worker = RdkafkaFeatureWorker(settings, scoring)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "feature worker (librdkafka) on %s: %s -> features of %s",
        settings.bootstrap_servers,
        worker.raw_topic,
        worker.batches.feature_set.name,
    )
    worker.run()
