"""The Kafka-native scorer: ``features`` in, one ``predictions`` record per input out.

It consumes micro-batches (size and wait bounded by the adaptive
:class:`~serving.batching.BatchPolicy`), scores them through the live routing and the fallback
chain, produces every prediction (and shadow prediction), waits for the broker to acknowledge
them, and only then commits the batch's offsets. A crash before the commit replays the batch:
the same request ids (the feature vector's event id, or topic/partition/offset when it has
none) are produced again, and the warehouse's ReplacingMergeTree keeps one row per request id —
no prediction is lost and none is doubled. Undecodable records and vectors the model cannot
read go to ``deadletter`` with the reason and their bytes.

Run one with ``python -m serving.kafka_scorer`` (``HEADWATER_SERVING_MODEL`` names the model).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Message
from pydantic import ValidationError

from infra.errors import BrokerUnavailable, HeadwaterError
from infra.event_bus import make_codec
from infra.kafka_clients import make_consumer
from infra.settings import load_settings
from schemas.models import DeadLetter, FeatureVector
from serving.batching import BatchPolicy
from serving.runtime import ServingRuntime, start_runtime
from serving.scorer import Scorer, ScoreRequest


@dataclass
class StreamCounts:
    consumed: int = 0
    predicted: int = 0
    dead_lettered: int = 0
    batches: int = 0


class KafkaScorer:
    """Consumes ``features`` in group ``group`` and produces ``predictions``."""

    def __init__(self, runtime: ServingRuntime, *, group: str | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.group = group or f"headwater-scorer-{runtime.model}"
        self.scorer: Scorer = runtime.scorer("kafka")
        self.policy = BatchPolicy(
            max_batch_size=self.settings.serving_batch_max,
            max_latency_s=self.settings.serving_batch_latency_ms / 1000,
        )
        self.counts = StreamCounts()
        self._codec = make_codec(self.settings)
        self._consumer: Consumer = make_consumer(
            self.settings, self.group, **{"fetch.wait.max.ms": 5}
        )
        self._consumer.subscribe([self.settings.topic("features")])

    def run(self, stop: threading.Event) -> None:
        """Score until ``stop`` is set; then leave the group cleanly."""
        try:
            while not stop.is_set():
                self.step()
        finally:
            self._consumer.close()

    def step(self) -> int:
        """Consume, score and produce one micro-batch, then commit it; returns its size."""
        wait = max(0.001, self.policy.max_latency_s - self.policy.expected_cost(1))
        messages = self._consumer.consume(self.policy.batch_limit, timeout=wait)
        if not messages:
            return 0
        started = time.monotonic()
        sources: dict[str, Message] = {}
        requests: list[ScoreRequest] = []
        for message in messages:
            request = self._request(message, started)
            if request is not None:
                sources[request.request_id] = message
                requests.append(request)
        if requests:
            self._score(requests, sources)
        self.runtime.bus.flush()  # every prediction and dead letter acknowledged ...
        self._consumer.commit(asynchronous=True)  # ... before the offsets move on
        self.policy.observed(len(messages), time.monotonic() - started)
        self.counts.consumed += len(messages)
        self.counts.batches += 1
        return len(messages)

    def _score(self, requests: list[ScoreRequest], sources: dict[str, Message]) -> None:
        scored = self.scorer.answer(requests)
        for prediction in scored.predictions:
            self.runtime.bus.send("predictions", prediction)
        answered = {p.request_id for p in scored.predictions}
        for prediction in self.scorer.shadow([r for r in requests if r.request_id in answered]):
            self.runtime.bus.send("predictions", prediction)
        self.counts.predicted += len(scored.predictions)
        for rejection in scored.rejected:
            message = sources[rejection.request.request_id]
            self._dead_letter(message, "features_unreadable", rejection.reason)

    def _request(self, message: Message, received_at: float) -> ScoreRequest | None:
        problem = message.error()
        if problem is not None:
            if problem.code() == KafkaError._PARTITION_EOF:
                return None
            raise BrokerUnavailable(f"consuming {message.topic()}: {problem.str()}")
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
        self.runtime.bus.send(
            "deadletter",
            DeadLetter(
                source_topic=message.topic() or self.settings.topic("features"),
                source_partition=message.partition() or 0,
                source_offset=message.offset() or 0,
                reason_code=code,
                reason=reason,
                original_key=message.key(),
                original_value=message.value(),
                failed_at_ms=int(time.time() * 1000),
            ),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score `features` into `predictions`.")
    parser.add_argument("--model", default=None, help="default: HEADWATER_SERVING_MODEL")
    parser.add_argument("--group", default=None, help="consumer group (default per model)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        runtime = start_runtime(load_settings(), args.model)
    except HeadwaterError as error:
        print(f"serving.kafka_scorer: {error}", file=sys.stderr)
        return 1
    try:
        KafkaScorer(runtime, group=args.group).run(stop)
    except HeadwaterError as error:
        print(f"serving.kafka_scorer: {error}", file=sys.stderr)
        return 1
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
