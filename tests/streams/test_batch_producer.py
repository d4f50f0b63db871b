"""The worker's batch producer on the real broker: a batch is confirmed whole, and a record the
broker refuses fails the confirmation, naming where it was going."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from headwater.core.errors import BrokerUnavailable, RecordRefused
from headwater.core.settings import HeadwaterSettings
from headwater.streams.batch_producer import Acks, BatchProducer
from headwater.streams.changelog import ChangelogStore
from headwater.streams.pipeline import RawRecord
from headwater.streams.worker import FeatureBatches
from tests.streams.poison import transaction
from tests.streams.workers import decoded, end_offsets

pytestmark = pytest.mark.integration


def test_confirmed_batches_are_on_the_broker(isolated: HeadwaterSettings) -> None:
    producer = BatchProducer(isolated)
    topic = isolated.topic("events")
    sent = producer.send((topic, b"k", b"v%d" % i, i % 3, None) for i in range(300))
    asyncio.run(producer.confirm())
    assert sent == 300 and end_offsets(isolated, "events") == 300


def test_a_refused_record_fails_the_batch_naming_it(isolated: HeadwaterSettings) -> None:
    producer = BatchProducer(isolated)
    topic = isolated.topic("events")
    producer.send([(topic, b"k", b"fine", 0, None), (topic, b"k", b"nowhere", 99, None)])
    with pytest.raises(BrokerUnavailable, match=rf"{topic}\[99\]"):
        producer.wait()
    producer.send([(topic, b"k", b"again", 1, None)])
    producer.wait()  # the failure was reported once; the producer goes on


def test_a_record_over_the_size_limit_is_handed_back_not_raised(
    isolated: HeadwaterSettings,
) -> None:
    producer = BatchProducer(isolated)
    topic = isolated.topic("events")
    refused: list[tuple[int, str]] = []
    big = b"x" * 1_100_000
    sent = producer.send(
        [(topic, b"k", b"a", 0, None), (topic, b"k", big, 0, None), (topic, b"k", b"b", 0, None)],
        lambda index, reason: refused.append((index, reason)),
    )
    producer.wait()
    assert sent == 2 and end_offsets(isolated, "events") == 2
    assert [i for i, _ in refused] == [1] and "Message size too large" in refused[0][1]
    with pytest.raises(RecordRefused, match=rf"{topic} refused a record of 1100000 bytes"):
        producer.send([(topic, b"k", big, 0, None)])  # without a handler: a typed error, named


def test_a_valid_event_whose_output_the_broker_refuses_becomes_a_dead_letter(
    isolated: HeadwaterSettings,
) -> None:
    """Past the worker's own size check (raised here), the producer's refusal of an `events`
    record is dead-lettered as its source event's (PRODUCE_REFUSED), and the batch goes on."""
    settings = isolated.model_copy(update={"kafka_max_record_bytes": 5_000_000})
    batches = FeatureBatches(settings)
    huge = orjson.dumps(transaction(1, card="card-9", country="c" * 1_030_000))
    batch = [RawRecord(0, 0, b"card-9", huge), RawRecord(0, 1, b"card-9", b"garbage")]
    out = batches.compute(batch, ChangelogStore(batches.feature_set))
    batches.send_outputs(out)
    batches.producer.wait()
    assert out.refused == 1
    # Its features record is dropped too: the event is dead-lettered, not half valid.
    assert end_offsets(isolated, "events") == 0 and end_offsets(isolated, "features") == 0
    letters = decoded(isolated, "deadletter", f"dl-{isolated.topic_prefix}")
    codes = sorted((d["source_offset"], d["reason_code"]) for d in letters)
    assert codes == [(0, "PRODUCE_REFUSED"), (1, "BAD_ENCODING")]


def test_the_prompt_lane_delivers_and_reports_like_the_bulk_one(
    isolated: HeadwaterSettings,
) -> None:
    """Records of a prompt topic take the second producer: one batch's acknowledgements are
    counted across both lanes, a refusal is handed back by its index in the batch, and a
    failure on the prompt lane fails the confirmation, naming it."""
    events, predictions = isolated.topic("events"), isolated.topic("predictions")
    producer = BatchProducer(isolated, prompt_topics=(predictions,))
    producer.send([(predictions, b"k", b"nowhere", 99, None)])
    with pytest.raises(BrokerUnavailable, match=rf"{predictions}\[99\]"):
        producer.wait()
    acks, refused = Acks(), list[int]()
    batch = [
        (events, b"k", b"e%d" % i, i % 3, None) if i % 2 else (predictions, b"k", b"p", -1, None)
        for i in range(200)
    ]
    batch.insert(7, (predictions, b"k", b"x" * 1_100_000, -1, None))
    sent = producer.send(batch, lambda index, _: refused.append(index), acks)
    producer.wait()
    assert sent == 200 and refused == [7]
    assert acks.complete and acks.reported == 200 and not acks.errors
    assert end_offsets(isolated, "events") == 100 and end_offsets(isolated, "predictions") == 100
