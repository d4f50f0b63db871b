"""The online feature worker: validates ``events.raw`` in batches, applies each event to its
entity's state (the online store, backed by a compacted changelog topic), and produces
``events``, ``features`` and ``deadletter`` records.

Run it with ``python -m headwater.streams.worker`` (``headwater up`` starts it detached, as
:mod:`headwater.serving.inline_worker`, which also scores). Two engines consume for it, chosen
by ``HEADWATER_STREAM_ENGINE``: ``librdkafka`` (the default,
:mod:`headwater.streams.rdkafka_engine`: confluent-kafka batches, several times faster) and
``faust`` (:mod:`headwater.streams.faust_engine`: a Faust agent over a Faust table). Both use
the consumer group ``<prefix>headwater-features`` and the same changelog topic in the same
format, so a worker can be switched from one to the other (stop every worker of the group
first: the two engines speak different group protocols).

A worker may also score (``python -m headwater.serving.inline_worker``, what ``headwater up``
runs): a :class:`BatchScoring` given to :class:`FeatureBatches` turns each batch's feature
vectors into ``predictions`` records, which leave in the same batch as the features (one broker
hop less between an event and its prediction than through the standalone scorer). The features
it scored carry the ``headwater-scored-by`` header, so that model's standalone scorer skips them.

Delivery, the same in both: a batch's outputs are produced and acknowledged by the broker first,
then the changed entity states are written to the changelog and acknowledged, and only then are
the batch's input offsets committed. A worker killed anywhere in between reprocesses the batch
after changelog recovery; events its recovered state has already applied (by source offset) are
skipped, so results equal an uninterrupted run.

>>> from headwater.streams.feature_module import load_feature_module
>>> fs = load_feature_module("headwater.demo.features").feature_set
>>> changelog_topic(HeadwaterSettings(topic_prefix="dev-"), fs)
'dev-headwater-features-card_activity-v1-state-changelog'
>>> WorkerCounters(consumed=3, valid=2, rejected=1)  # doctest: +NORMALIZE_WHITESPACE
WorkerCounters(consumed=3, valid=2, rejected=1, skipped=0, predicted=0, unreadable=0, unscored=0,
               batches=0, process_s=0.0, confirm_s=0.0)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from headwater.core.errors import RecordRefused
from headwater.core.heap import set_aside_startup_heap
from headwater.core.logs import configure_logging
from headwater.core.settings import HeadwaterSettings, load_settings
from headwater.infra.event_bus import make_codec
from headwater.infra.metrics import record_batch, serve_process_metrics
from headwater.schemas.dead_letters import dead_letter
from headwater.schemas.domain import load_domain
from headwater.schemas.models import DeadLetter
from headwater.schemas.topics import SCORED_BY_HEADER
from headwater.streams.anomalies import ReasonCode
from headwater.streams.batch_producer import Acks, BatchProducer, Headers, Record
from headwater.streams.changelog import ChangelogStore
from headwater.streams.feature_module import load_feature_module
from headwater.streams.featureset import FeatureSet
from headwater.streams.pipeline import BatchOutput, FeaturePipeline, OutRecord, RawRecord

log = logging.getLogger("headwater.streams.worker")

BATCH_MAX = 2000
BATCH_WITHIN_S = 0.05


def app_id(settings: HeadwaterSettings) -> str:
    """The worker's consumer group (and Faust app id)."""
    return settings.topic("headwater-features")


def table_name(fs: FeatureSet) -> str:
    return f"{fs.name}-v{fs.version}-state"


def changelog_topic(settings: HeadwaterSettings, fs: FeatureSet) -> str:
    """The state's changelog topic, named as Faust names a table's."""
    return f"{app_id(settings)}-{table_name(fs)}-changelog"


@dataclass
class WorkerCounters:
    consumed: int = 0
    valid: int = 0
    rejected: int = 0
    skipped: int = 0
    # Inline scoring: valid = predicted + unreadable + unscored.
    predicted: int = 0  # answers produced in the worker's process
    unreadable: int = 0  # vectors the model cannot read: dead-lettered
    unscored: int = 0  # left to the standalone scorer (no routing yet, say)
    batches: int = 0
    process_s: float = 0.0  # validating and computing features
    confirm_s: float = 0.0  # waiting for the broker to acknowledge outputs and state

    def add(self, consumed: int, out: BatchOutput) -> None:
        self.batches += 1
        self.consumed += consumed
        self.valid += out.valid
        self.rejected += out.rejected
        self.skipped += out.skipped
        self.predicted += out.predicted
        self.unreadable += out.unreadable
        if out.scored_by is None:
            self.unscored += out.valid


class BatchScoring(Protocol):
    """Scores a batch in the feature worker's process (the serving layer provides one): appends
    the batch's ``predictions`` (and the dead letters of vectors the model cannot read) to
    ``out.records``, and sets ``out.scored_by``, ``out.predicted`` and ``out.unreadable``; or
    leaves ``out`` as it is when it cannot score now (no routing yet), and the standalone scorer
    will. ``received_at`` is when the batch was taken in (``time.monotonic``)."""

    def score(self, out: BatchOutput, received_at: float) -> None: ...


class FeatureBatches:
    """What both engines do with a batch: :meth:`outputs` computes and sends its records;
    once the broker acknowledged them, :meth:`states` sends the changed states; once those are
    acknowledged too, :meth:`done` counts the batch (and the engine commits its offsets)."""

    def __init__(self, settings: HeadwaterSettings, scoring: BatchScoring | None = None) -> None:
        codec = make_codec(settings)
        domain = load_domain(codec.catalog, settings.event_schema_file)
        module = load_feature_module(settings.features)
        self.pipeline = FeaturePipeline(
            domain,
            codec,
            module,
            settings.topic_prefix,
            max_future_skew_ms=settings.max_future_skew_ms,
            max_record_bytes=settings.kafka_max_record_bytes,
        )
        self.feature_set = module.feature_set
        self.scoring = scoring
        # Predictions scored here leave on the producer's prompt lane: an application waits.
        prompt = () if scoring is None else (settings.topic("predictions"),)
        self.producer = BatchProducer(settings, prompt_topics=prompt)
        self.counters = WorkerCounters()
        self.changelog = changelog_topic(settings, self.feature_set)
        topics = ("events", "features", "predictions", "deadletter")
        self._names = {t: settings.topic(t) for t in topics}
        self._started = self._processed = 0.0

    def outputs(self, batch: Sequence[RawRecord], store: ChangelogStore) -> BatchOutput:
        """Compute the batch and send its outputs."""
        self._started = time.perf_counter()
        out = self.compute(batch, store)
        self.send_outputs(out)
        self._processed = time.perf_counter()
        return out

    def compute(self, batch: Sequence[RawRecord], store: ChangelogStore) -> BatchOutput:
        """Validate the batch, apply it to the states, and score it if this worker scores;
        nothing is sent."""
        received_at = time.monotonic()
        out = self.pipeline.process(batch, store, int(time.time() * 1000))
        if self.scoring is not None and out.features:
            self.scoring.score(out, received_at)
        return out

    def send_outputs(self, out: BatchOutput, acks: Acks | None = None) -> None:
        """Send the batch's records (their delivery reports counted in ``acks``, if given); a
        record the producer refuses (over the broker's size limit, say) becomes a dead letter
        of its source event, whose other outputs are dropped: each event ends up either valid
        or dead-lettered, never half of both."""
        names, records = self._names, out.records
        letters: list[Record] = []
        dropped: set[tuple[int, int]] = set()  # (partition, source offset) of refused events
        handed: list[OutRecord] = []  # what the producer was given, in order
        scored: Headers = (
            None if out.scored_by is None else [(SCORED_BY_HEADER, out.scored_by.encode())]
        )

        def to_send() -> Iterator[Record]:
            for r in records:
                if not dropped or (r.partition, r.source_offset) not in dropped:
                    handed.append(r)
                    partition = -1 if r.keyed else r.partition
                    headers = scored if r.topic == "features" else None
                    yield (names[r.topic], r.key, r.value, partition, headers)

        def refused(index: int, reason: str) -> None:
            record = handed[index]
            dropped.add((record.partition, record.source_offset))
            letters.append(self._refused_letter(record, reason))

        self.producer.send(to_send(), refused, acks)
        if letters:  # bounded dead letters: refusing one of them is a broken broker, not a record
            self.producer.send(letters, acks=acks)
            out.refused += len(letters)
            log.warning("%d output record(s) refused by the broker, dead-lettered", len(letters))

    def _refused_letter(self, record: OutRecord, reason: str) -> Record:
        """The dead letter of an output record the producer refused: its source event's."""
        if record.topic == "deadletter":
            raise RecordRefused(f"a dead letter of {self.pipeline.raw_topic} was refused: {reason}")
        raw_topic = self.pipeline.raw_topic
        letter = dead_letter(
            raw_topic,
            record.partition,
            record.source_offset,
            ReasonCode.PRODUCE_REFUSED.value,
            f"its {record.topic} record was refused: {reason}",
            record.key,
            record.value,
        )
        value = self.pipeline.fast.encode(DeadLetter.SCHEMA, letter.to_avro())
        return (self._names["deadletter"], raw_topic.encode(), value, record.partition, None)

    def state_records(self, out: BatchOutput, store: ChangelogStore) -> list[Record]:
        """The changelog records of the states the batch changed, as they are now."""
        changelog, state_bytes = self.changelog, store.state_bytes
        records: list[Record] = [
            (changelog, entity.encode(), state_bytes(entity), partition, None)
            for entity, partition in out.changed.items()
        ]
        # Idle states: a tombstone each, so compaction removes them and no restart restores them.
        records.extend((changelog, e.encode(), None, p, None) for e, p in out.evicted.items())
        return records

    def states(self, out: BatchOutput, store: ChangelogStore) -> None:
        """Send the changed states (once the outputs are acknowledged)."""
        self.producer.send(self.state_records(out, store))

    def done(
        self,
        consumed: int,
        out: BatchOutput,
        started: float | None = None,
        processed: float | None = None,
    ) -> None:
        """Count a batch whose outputs and states are acknowledged; ``started`` and
        ``processed`` (``perf_counter`` times) default to those of the last :meth:`outputs`."""
        counters, finished = self.counters, time.perf_counter()
        started = self._started if started is None else started
        processed = self._processed if processed is None else processed
        counters.add(consumed, out)
        counters.process_s += processed - started
        counters.confirm_s += finished - processed
        took = finished - started
        record_batch("features", "events.raw", consumed, took, rejected=out.rejected)


def run_worker(settings: HeadwaterSettings, scoring: BatchScoring | None = None) -> None:
    """Run the feature worker on the configured engine until it is signalled to stop. Its
    process's start-up (the model of ``scoring`` included) is done: its heap is set aside."""
    set_aside_startup_heap()
    if settings.stream_engine == "faust":
        from headwater.streams.faust_engine import run_faust_worker

        run_faust_worker(settings, scoring)
    else:
        from headwater.streams.rdkafka_engine import run_rdkafka_worker

        run_rdkafka_worker(settings, scoring)


def main() -> None:
    configure_logging("feature_worker")
    settings = load_settings()
    serve_process_metrics(settings, "feature_worker")
    run_worker(settings)


if __name__ == "__main__":
    main()
