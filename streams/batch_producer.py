"""Producing a batch's records with librdkafka and waiting until the broker has them all.

The feature worker hands each batch's outputs here instead of to Faust's pure-Python producer:
``produce`` costs a few microseconds a record. :meth:`BatchProducer.wait` blocks until the
broker acknowledged them; :meth:`BatchProducer.confirm` waits in a thread, so an event loop
(Faust's) keeps fetching meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from confluent_kafka import KafkaError, KafkaException, Message

from headwater.core.errors import BrokerUnavailable, RecordRefused
from headwater.core.settings import HeadwaterSettings
from headwater.infra.kafka_clients import make_producer, refuses_the_record

Headers = list[tuple[str, str | bytes | None]] | None
# topic, key, value (None: a tombstone), partition (-1: the partitioner's pick by key), headers
Record = tuple[str, bytes, bytes | None, int, Headers]
Refused = Callable[[int, str], None]  # the index of a refused record, and why


class BatchProducer:
    """An idempotent librdkafka producer whose batches are confirmed as a whole."""

    def __init__(self, settings: HeadwaterSettings) -> None:
        # Reports of failed records only, through one configured callback: a per-record
        # callback for every success costs more than producing the record.
        self._producer = make_producer(
            settings,
            **{
                "linger.ms": 2,
                "batch.num.messages": 10_000,
                "delivery.report.only.error": True,
                "on_delivery": self._on_delivery,
            },
        )
        self._timeout_s = settings.kafka_timeout_s * 3
        self._address = settings.bootstrap_servers
        self._errors: list[str] = []

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._errors.append(f"{message.topic()}[{message.partition()}]: {error.str()}")

    def send(self, records: Iterable[Record], refused: Refused | None = None) -> int:
        """Produce ``records``; one the producer refuses (its size, say) is handed to
        ``refused`` with its index and the reason, or without ``refused`` fails the batch
        naming it. Returns how many were produced."""
        produce, poll, count = self._producer.produce, self._producer.poll, 0
        for index, (topic, key, value, partition, headers) in enumerate(records):
            while True:
                try:
                    produce(topic, value, key, partition, headers=headers)
                    count += 1
                    break
                except BufferError:
                    poll(0.01)  # the local queue is full: let deliveries drain
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
        poll(0)
        return count

    def wait(self) -> None:
        """Return once every record sent so far is acknowledged; fail naming the broker."""
        left = int(self._producer.flush(self._timeout_s))
        if left or self._errors:
            errors, self._errors = self._errors, []
            raise BrokerUnavailable(
                f"{left} record(s) unacknowledged and {len(errors)} failed at {self._address}: "
                f"{errors[:3]}"
            )

    async def confirm(self) -> None:
        """:meth:`wait` without blocking the event loop."""
        await asyncio.to_thread(self.wait)
