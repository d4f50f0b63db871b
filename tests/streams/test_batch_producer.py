"""The worker's batch producer on the real broker: a batch is confirmed whole, and a record the
broker refuses fails the confirmation, naming where it was going."""

from __future__ import annotations

import asyncio

import pytest

from headwater.core.errors import BrokerUnavailable
from headwater.core.settings import HeadwaterSettings
from headwater.streams.batch_producer import BatchProducer
from tests.streams.workers import end_offsets

pytestmark = pytest.mark.integration


def test_confirmed_batches_are_on_the_broker(isolated: HeadwaterSettings) -> None:
    producer = BatchProducer(isolated)
    topic = isolated.topic("events")
    sent = producer.send((topic, b"k", b"v%d" % i, i % 3) for i in range(300))
    asyncio.run(producer.confirm())
    assert sent == 300 and end_offsets(isolated, "events") == 300


def test_a_refused_record_fails_the_batch_naming_it(isolated: HeadwaterSettings) -> None:
    producer = BatchProducer(isolated)
    topic = isolated.topic("events")
    producer.send([(topic, b"k", b"fine", 0), (topic, b"k", b"nowhere", 99)])
    with pytest.raises(BrokerUnavailable, match=rf"{topic}\[99\]"):
        producer.wait()
    producer.send([(topic, b"k", b"again", 1)])
    producer.wait()  # the failure was reported once; the producer goes on
