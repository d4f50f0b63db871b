"""A bare relay: bench_serving's two-hop floor.

``python -m bench.relay FROM TO`` (full topic names; the broker as ``HEADWATER_*`` names it)
copies every record of ``FROM`` to ``TO``, key and value unchanged, through the feature worker's
own clients: its consumer settings and its producer (:class:`BatchProducer`, the unlingered
prompt lane its predictions take).
No decoding, no state, no scoring, no commits: what any design with a second broker hop pays
at least, on the same machine, in the same run. Event -> prediction through the feature worker
measured against it says what the worker itself adds; against the one-hop floor, what the
second hop and the worker add together.
"""

from __future__ import annotations

import signal
import sys
import uuid

from confluent_kafka import Message

from headwater.core.settings import load_settings
from headwater.infra.kafka_clients import make_consumer
from headwater.streams.batch_producer import BatchProducer, Record
from headwater.streams.worker import BATCH_MAX, BATCH_WITHIN_S

# The feature worker's consumer overrides (headwater.streams.rdkafka_engine), bar the
# cooperative assignment a single relay does not need.
CONSUMER_CONFIG = {"fetch.wait.max.ms": 100, "queued.max.messages.kbytes": 16384}


def records_of(messages: list[Message], target: str) -> list[Record]:
    """The messages as records to ``target``, key and value unchanged, to the partition the
    key picks.

    >>> records_of([Message(topic="a", key=b"k", value=b"v")], "b")
    [('b', b'k', b'v', -1, None)]
    """
    return [(target, m.key() or b"", m.value(), -1, None) for m in messages if m.error() is None]


def main(argv: list[str] | None = None) -> int:
    source, target = argv or sys.argv[1:]
    settings = load_settings()
    consumer = make_consumer(settings, f"bench-relay-{uuid.uuid4().hex[:8]}", **CONSUMER_CONFIG)
    producer = BatchProducer(settings, prompt_topics=(target,))  # as the worker's predictions
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    consumer.subscribe([source])
    relayed = 0
    try:
        while not stopping:
            # As the feature worker takes a batch: what has arrived, or the first to arrive.
            messages = consumer.consume(BATCH_MAX, timeout=0)
            if not messages:
                messages = consumer.consume(1, timeout=BATCH_WITHIN_S)
                if messages:
                    messages += consumer.consume(BATCH_MAX - 1, timeout=0)
            relayed += producer.send(records_of(messages, target))
            producer.poll(0)
        producer.wait()
    finally:
        consumer.close()
    print(f"relayed {relayed}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
