"""The Kafka-native scorer: ``features`` in, one ``predictions`` record per input out.

It consumes micro-batches (size and wait bounded by the adaptive
:class:`~headwater.serving.batching.BatchPolicy`), scores them through the live routing and the
fallback
chain, and produces every prediction (and shadow prediction). It goes on consuming while the
broker acknowledges them; a batch's offsets are committed only once all its records (and every
earlier batch's) were acknowledged (:class:`~headwater.serving.delivery.DeliveryLedger`).

A crash before the commit replays the batch: the same request ids (the feature vector's event
id, or topic/partition/offset when it has none) are produced again, and the warehouse's
ReplacingMergeTree keeps one row per request id, so no prediction is lost and none is doubled.
Undecodable records and vectors the model cannot read go to ``deadletter`` with the reason and
their bytes. Records the feature worker already scored for this model (the ``headwater-scored-by``
header: :mod:`headwater.serving.inline_worker`) are skipped, so each vector gets one prediction;
the scorer answers the rest: features produced elsewhere, and those of events the worker took
in before it had a routing.

Run one with ``python -m headwater.serving.kafka_scorer`` (``HEADWATER_SERVING_MODEL`` names the
model).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from pydantic import ValidationError

from headwater.core.errors import BrokerUnavailable, HeadwaterError
from headwater.core.heap import set_aside_startup_heap
from headwater.core.logs import configure_logging
from headwater.core.settings import load_settings
from headwater.infra.event_bus import make_codec
from headwater.infra.kafka_clients import (
    consumer_error_is_fatal,
    make_consumer,
    make_producer,
    refuses_the_record,
)
from headwater.infra.metrics import serve_process_metrics
from headwater.schemas.dead_letters import dead_letter
from headwater.schemas.models import EventModel, FeatureVector
from headwater.schemas.topics import SCORED_BY_HEADER, topic_spec
from headwater.serving.batching import BatchPolicy
from headwater.serving.delivery import BatchTicket, DeliveryFailed, DeliveryLedger
from headwater.serving.runtime import ServingRuntime, start_runtime
from headwater.serving.scorer import Scorer, ScoreRequest

log = logging.getLogger("headwater.serving.kafka_scorer")

MAX_UNACKNOWLEDGED_BATCHES = 16
IDLE_WAIT_S = 0.1  # how long one step waits for a first record when none is queued
COMMIT_INTERVAL_S = 0.5  # the most often acknowledged offsets are committed

# The consumer: the broker answers a fetch as soon as one byte is there (fetch.min.bytes=1),
# so the long poll adds no latency while it spares the broker (and the cores it shares) an
# empty fetch every few milliseconds when the topic is quiet. Nagle off on both clients: a
# small request must not wait for the acknowledgement of the previous one.
CONSUMER_CONFIG = {
    "fetch.min.bytes": 1,
    "fetch.wait.max.ms": 100,
    "socket.nagle.disable": True,
}
# The producer: no linger. A micro-batch's predictions are produced together anyway, and the
# idempotent producer with linger.ms=1 kept its broker thread polling in a loop on this 2-core
# machine (over half the scorer's CPU, measured with perf): at 2k events/s p50 went from
# 170-1000 ms with linger.ms=1 to 20-30 ms with 0 (bench_serving, same runs' floor alike).
PRODUCER_CONFIG = {"linger.ms": 0, "socket.nagle.disable": True}


@dataclass
class StreamCounts:
    consumed: int = 0
    predicted: int = 0
    dead_lettered: int = 0
    scored_inline: int = 0  # skipped: the feature worker produced their predictions
    batches: int = 0


class KafkaScorer:
    """Consumes ``features`` in group ``group`` (default ``<topic prefix>headwater-scorer-<model>``,
    so the scorers of several prefixes on one cluster never share a group) and produces
    ``predictions``."""

    def __init__(self, runtime: ServingRuntime, *, group: str | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.group = group or f"{self.settings.topic_prefix}headwater-scorer-{runtime.model}"
        self.scorer: Scorer = runtime.scorer("kafka")
        self.policy = BatchPolicy(
            max_batch_size=self.settings.serving_batch_max,
            max_latency_s=self.settings.serving_batch_latency_ms / 1000,
        )
        self.counts = StreamCounts()
        self._codec = make_codec(self.settings)
        self._consumer: Consumer = make_consumer(self.settings, self.group, **CONSUMER_CONFIG)
        self._subscribed = False
        self._producer = make_producer(self.settings, **PRODUCER_CONFIG)
        self._ledger = DeliveryLedger()
        self._ticket: BatchTicket | None = None
        self._uncommitted: dict[tuple[str, int], int] = {}
        self._committed_at = 0.0
        self._scored_inline = (SCORED_BY_HEADER, runtime.model.encode())

    def run(self, stop: threading.Event) -> None:
        """Score until ``stop`` is set; then commit what was acknowledged and leave the group.
        Until the model has a routing there is nothing to serve: the scorer waits without
        consuming, so the features queue up in the topic and are scored once it has one."""
        try:
            waiting_since = time.monotonic()
            while not stop.is_set() and not self.subscribe_when_routed():
                if time.monotonic() - waiting_since > 60:
                    print(
                        f"headwater.serving.kafka_scorer: {self.waiting_reason()}", file=sys.stderr
                    )
                    waiting_since = time.monotonic()
                stop.wait(0.2)
            while not stop.is_set():
                self.step()
            self.drain()
        finally:
            self._consumer.close()

    def waiting_reason(self) -> str:
        return (
            f"model {self.runtime.model!r} has no routing yet: waiting before consuming "
            f"{self.settings.topic('features')} (publish one: headwater models route)"
        )

    def subscribe_when_routed(self) -> bool:
        """Join the group once the model has a routing; whether it has joined."""
        if not self._subscribed and self.runtime.routing.router(self.runtime.model) is not None:
            self._consumer.subscribe([self.settings.topic("features")])
            self._subscribed = True
        return self._subscribed

    def step(self) -> int:
        """Consume, score and produce one micro-batch; commit every batch acknowledged so far.
        Returns the batch's size.

        A batch is what has arrived, up to the policy's limit: the step waits for a first
        record, never for a full batch. At low load every record goes at once; under load
        records queue while a batch is scored, so batches grow by themselves and the fixed
        cost of a batch is paid less often (a backlog drains in full batches)."""
        if not self.subscribe_when_routed():
            return 0
        limit = self.policy.batch_limit
        messages = self._consumer.consume(limit, timeout=0)
        if not messages:
            messages = self._consumer.consume(1, timeout=IDLE_WAIT_S)
            if messages and limit > 1:  # and whatever came with it
                messages += self._consumer.consume(limit - 1, timeout=0)
        if messages:
            started = time.monotonic()
            self._process(messages, started)
            self.policy.observed(len(messages), time.monotonic() - started)
            self.counts.consumed += len(messages)
            self.counts.batches += 1
        self._producer.poll(0)  # run the delivery callbacks that arrived meanwhile
        while len(self._ledger) > MAX_UNACKNOWLEDGED_BATCHES:
            self._producer.poll(0.005)  # back-pressure: the broker is behind
            self._commit_acknowledged()
        self._commit_acknowledged()
        return len(messages)

    def drain(self) -> None:
        """Wait for every outstanding send, then commit."""
        left = self._producer.flush(self.settings.kafka_timeout_s * 3)
        self._commit_acknowledged(now=True)
        if left:
            raise BrokerUnavailable(
                f"{left} prediction record(s) not acknowledged by {self.settings.bootstrap_servers}"
            )

    def _process(self, messages: list[Message], started: float) -> None:
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            if message.error() is None:
                key = (message.topic() or "", message.partition() or 0)
                offsets[key] = max(offsets.get(key, 0), (message.offset() or 0) + 1)
        self._ticket = self._ledger.open(offsets)
        sources: dict[str, Message] = {}
        requests: list[ScoreRequest] = []
        for message in messages:
            headers = message.headers()
            if headers and self._scored_inline in headers:
                self.counts.scored_inline += 1
                continue
            request = self._request(message, started)
            if request is not None:
                sources[request.request_id] = message
                requests.append(request)
        if requests:
            self._score(requests, sources)

    def _commit_acknowledged(self, *, now: bool = False) -> None:
        """Commit the offsets of every acknowledged batch: at most every
        :data:`COMMIT_INTERVAL_S` (each commit is a request the broker writes to its offsets
        log: one per micro-batch is broker work that buys nothing), and at once with ``now``.
        A crash replays what was not committed yet; the replayed predictions carry the same
        request ids and the warehouse keeps one row per id."""
        try:
            released = self._ledger.releasable()
        except DeliveryFailed as error:
            raise BrokerUnavailable(
                f"producing predictions failed ({error}); restart to replay from the last "
                "committed offsets"
            ) from None
        for offsets in released:
            self._uncommitted.update(offsets)
        due = now or time.monotonic() - self._committed_at >= COMMIT_INTERVAL_S
        if self._uncommitted and due:
            positions = [TopicPartition(t, p, o) for (t, p), o in self._uncommitted.items()]
            try:
                if now:
                    self._consumer.commit(offsets=positions, asynchronous=False)
                else:
                    self._consumer.commit(offsets=positions, asynchronous=True)
            except KafkaException as error:  # only a synchronous commit raises
                raise BrokerUnavailable(
                    f"committing {self.group}'s offsets on {self.settings.topic('features')} "
                    f"failed ({error}); a restart replays them (same request ids, no duplicates)"
                ) from None
            self._uncommitted = {}
            self._committed_at = time.monotonic()

    def _send(self, topic: str, event: EventModel) -> None:
        self._send_all(topic, [event])

    def _send_all(
        self,
        topic: str,
        events: Sequence[EventModel],
        refused: Callable[[EventModel, str], None] | None = None,
    ) -> None:
        """Produce ``events`` as part of the current batch's ticket: every one encoded first,
        then all handed to the producer in one call. Produced one by one between encodings,
        each record woke the producer's broker thread, which sent the batch in many small
        requests: measured at a batch's pace (12 records every 6 ms), the producer's threads
        took about 40% more CPU and the broker about 20% more than with the batch in one call."""
        ticket = self._ticket
        assert ticket is not None
        spec = topic_spec(topic)
        messages: list[dict[str, Any]] = []
        for event in events:
            record = event.to_avro()
            value = self._codec.encode(event.SCHEMA, record)
            messages.append({"value": value, "key": spec.key_of(record).encode()})
        event_of = {id(m): e for m, e in zip(messages, events, strict=True)}
        ticket.expect(len(messages))

        def on_delivery(error: KafkaError | None, _: Message) -> None:
            ticket.delivered(None if error is None else error.str())

        name = self.settings.topic(topic)
        while messages:
            self._producer.produce_batch(name, messages, on_delivery=on_delivery)
            tried, messages = messages, []
            for message in tried:
                error = message.pop("_error", None)
                if error is None:
                    continue  # queued: its delivery report comes through on_delivery
                if error.code() == KafkaError._QUEUE_FULL:
                    messages.append(message)
                elif refused is not None and refuses_the_record(error):
                    # This record alone (its size, say): it is accounted for by the caller
                    # (a dead letter of its source), the batch goes on.
                    ticket.delivered(None)
                    refused(event_of[id(message)], f"{name}: {error.str()}")
                else:  # never queued: the batch fails and is replayed after a restart
                    ticket.delivered(f"{name}: {error.str()}")
            if messages:
                self._producer.poll(0.05)  # the local queue is full: let deliveries drain

    def _score(self, requests: list[ScoreRequest], sources: dict[str, Message]) -> None:
        scored = self.scorer.answer(requests)
        answered = {p.request_id for p in scored.predictions}
        shadows = self.scorer.shadow([r for r in requests if r.request_id in answered])

        def refused(event: EventModel, reason: str) -> None:
            request_id = getattr(event, "request_id", "")
            if request_id in sources:
                if event in scored.predictions:
                    self.counts.predicted -= 1
                self._dead_letter(sources[request_id], "PRODUCE_REFUSED", reason)

        self._send_all("predictions", [*scored.predictions, *shadows], refused)
        self.counts.predicted += len(scored.predictions)
        for rejection in scored.rejected:
            message = sources[rejection.request.request_id]
            self._dead_letter(message, "features_unreadable", rejection.reason)

    def _request(self, message: Message, received_at: float) -> ScoreRequest | None:
        problem = message.error()
        if problem is not None:
            if problem.code() == KafkaError._PARTITION_EOF:
                return None
            if consumer_error_is_fatal(problem):
                raise BrokerUnavailable(f"consuming {message.topic()}: {problem.str()}")
            log.warning("consuming %s: %s (retrying)", message.topic(), problem.str())
            return None
        try:
            _, record = self._codec.decode(message.value() or b"", FeatureVector.SCHEMA)
            vector = FeatureVector.from_avro(record)
        except (HeadwaterError, ValidationError, ValueError) as error:
            self._dead_letter(message, "undecodable", f"not a FeatureVector: {error}")
            return None
        return ScoreRequest(
            request_id=vector.event_id
            or f"{message.topic()}-{message.partition()}-{message.offset()}",
            entity_id=vector.entity_id,
            features=vector.values,
            event_time_ms=vector.event_time_ms,
            received_at=received_at,
            feature_set=vector.feature_set,
            feature_set_version=vector.feature_set_version,
        )

    def _dead_letter(self, message: Message, code: str, reason: str) -> None:
        self.counts.dead_lettered += 1
        self._send(
            "deadletter",
            dead_letter(
                message.topic() or self.settings.topic("features"),
                message.partition() or 0,
                message.offset() or 0,
                code,
                reason,
                message.key(),
                message.value(),
            ),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score `features` into `predictions`.")
    parser.add_argument("--model", default=None, help="default: HEADWATER_SERVING_MODEL")
    parser.add_argument("--group", default=None, help="consumer group (default per model)")
    args = parser.parse_args(argv)
    configure_logging("scorer")
    torch.set_num_threads(1)  # small batches: intra-op threads only contend for the cores
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        runtime = start_runtime(load_settings(), args.model)
    except HeadwaterError as error:
        print(f"headwater.serving.kafka_scorer: {error}", file=sys.stderr)
        return 1
    serve_process_metrics(runtime.settings, "kafka-scorer", serving=runtime)
    try:
        scorer = KafkaScorer(runtime, group=args.group)
        set_aside_startup_heap()
        scorer.run(stop)
        # What it did, as one JSON line on the way out (operators, the benchmark).
        print(json.dumps(asdict(scorer.counts)), file=sys.stderr)
    except HeadwaterError as error:
        print(f"headwater.serving.kafka_scorer: {error}", file=sys.stderr)
        return 1
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
