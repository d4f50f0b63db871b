"""The feature pipeline's per-batch logic: raw records in, ``events``, ``features`` and
``deadletter`` records out, entity state updated. No Kafka and no Faust here: the online worker
feeds it batches from ``events.raw`` and stores the state in a Faust table; the offline path and
the tests feed it lists.

>>> from headwater.schemas.catalog import SchemaCatalog
>>> from headwater.schemas.codec import AvroCodec
>>> from headwater.schemas.domain import load_domain
>>> from headwater.streams.feature_module import load_feature_module
>>> codec = AvroCodec(SchemaCatalog.default())
>>> module = load_feature_module("headwater.demo.features")
>>> pipeline = FeaturePipeline(load_domain(codec.catalog), codec, module, topic_prefix="")
>>> store = DictStateStore()
>>> line = (b'{"event_id": "e1", "card_id": "c1", "event_time_ms": 5, "amount": 9.5, '
...         b'"merchant_category": "fuel", "country": "NL"}')
>>> batch = [RawRecord(0, 0, b"c1", line), RawRecord(0, 1, b"c1", b"oops")]
>>> out = pipeline.process(batch, store, now_ms=7)
>>> [(r.topic, r.partition) for r in out.records], out.valid, out.rejected
([('events', 0), ('features', 0), ('deadletter', 0)], 1, 1)
>>> store.get("c1").events
1
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from headwater.schemas.codec import AvroCodec
from headwater.schemas.dead_letters import dead_letter
from headwater.schemas.domain import Domain
from headwater.schemas.models import DeadLetter, Event, FeatureVector
from headwater.streams.anomalies import Anomaly, ReasonCode
from headwater.streams.fast_avro import FastAvro
from headwater.streams.feature_module import FeatureModule
from headwater.streams.featureset import EntityState, FeatureSet
from headwater.streams.idle import IdleExpiry
from headwater.streams.validation import EventRecord, EventValidator


class RawRecord(NamedTuple):
    """One record of ``events.raw`` as the consumer saw it (a tuple: several per event are
    made on the hot path, and a frozen dataclass costs twice as much to build)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class OutRecord(NamedTuple):
    """One record to produce: topic name (without prefix), the partition of the ``events.raw``
    record it came from (and its offset), key and encoded value. It goes to that same partition
    of its topic (co-partitioned with ``events.raw``), or with ``keyed`` to the one the
    producer's partitioner picks for its key (``predictions``: keyed by request id)."""

    topic: str
    partition: int
    key: bytes
    value: bytes
    source_offset: int = -1
    keyed: bool = False


class FeatureRow(NamedTuple):
    """One valid event's feature vector as computed (its Avro record, not yet encoded), with
    the ``events.raw`` partition and offset it came from: what an in-process scorer reads."""

    partition: int
    source_offset: int
    record: dict[str, Any]


@dataclass
class BatchOutput:
    """What one batch produced, and the entities whose state changed (with their partition)."""

    records: list[OutRecord] = field(default_factory=list)
    features: list[FeatureRow] = field(default_factory=list)  # every features record's vector
    changed: dict[str, int] = field(default_factory=dict)
    evicted: dict[str, int] = field(default_factory=dict)  # idle states dropped: tombstones
    valid: int = 0
    rejected: int = 0
    skipped: int = 0
    refused: int = 0  # valid, but an output refused by the broker: dead-lettered after all
    # Scored in the worker's process (serving's inline scorer): the model whose predictions of
    # this batch's features are among ``records``, and how many answers that is.
    scored_by: str | None = None
    predicted: int = 0
    unreadable: int = 0  # vectors that model cannot read: dead-lettered instead of answered


class StateStore(Protocol):
    """Where entity states live (a changelog-backed store online, a dict in tests), with
    their idle clocks."""

    idle: IdleExpiry

    def get(self, entity: str) -> EntityState | None: ...

    def put(self, entity: str, state: EntityState, partition: int) -> None: ...

    def delete(self, entity: str) -> None: ...

    def partition_of(self, entity: str) -> int | None:
        """The partition the entity's state lives with (None: not known)."""
        ...


class DictStateStore:
    """An in-memory state store (tests); ``idle_ttl_ms`` as ``HEADWATER_ENTITY_IDLE_TTL_MS``."""

    def __init__(self, idle_ttl_ms: int = 0) -> None:
        self.states: dict[str, EntityState] = {}
        self.partitions: dict[str, int] = {}
        self.idle = IdleExpiry(idle_ttl_ms)

    def get(self, entity: str) -> EntityState | None:
        return self.states.get(entity)

    def put(self, entity: str, state: EntityState, partition: int) -> None:
        self.states[entity] = state
        self.partitions[entity] = partition

    def delete(self, entity: str) -> None:
        self.states.pop(entity, None)
        self.partitions.pop(entity, None)

    def partition_of(self, entity: str) -> int | None:
        return self.partitions.get(entity)

    def __iter__(self) -> Iterator[str]:
        return iter(self.states)


def feature_record(
    fs: FeatureSet, event: EventRecord | dict[str, Any], values: dict[str, float], now_ms: int
) -> dict[str, Any]:
    """The Avro record of a ``FeatureVector``."""
    return {
        "entity_id": event["entity_id"],
        "feature_set": fs.name,
        "feature_set_version": fs.version,
        "event_id": event["event_id"],
        "event_time_ms": event["event_time_ms"],
        "computed_at_ms": now_ms,
        "values": values,
    }


class FeaturePipeline:
    """Validate, apply to entity state, emit: one batch at a time, in offset order."""

    def __init__(
        self,
        domain: Domain,
        codec: AvroCodec,
        module: FeatureModule,
        topic_prefix: str,
        max_future_skew_ms: int | None = None,
        max_record_bytes: int | None = None,
    ) -> None:
        """``max_future_skew_ms``: reject events later than ``now_ms`` plus this (none: no
        limit, as offline, where "now" is not the events' time); ``max_record_bytes``: reject
        events whose ``events`` record would be larger."""
        module.check_domain(domain)
        self.max_future_skew_ms = max_future_skew_ms
        self.max_record_bytes = max_record_bytes
        self.codec = codec
        self.fast = FastAvro(codec)
        self.feature_set = module.feature_set
        self.validator = EventValidator(domain, codec, module.constraints)
        self.raw_topic = f"{topic_prefix}events.raw"

    def process(self, batch: Sequence[RawRecord], store: StateStore, now_ms: int) -> BatchOutput:
        out = BatchOutput()
        for raw in batch:
            try:
                self._one(raw, store, out, now_ms)
            except Exception as error:  # a record that breaks a feature must not stop the worker
                failed = Anomaly(
                    ReasonCode.INVALID_EVENT, "", f"computing its features failed: {error!r}"
                )
                self._reject(out, raw, [failed], now_ms)
        for entity, partition in store.idle.due():  # idle states leave memory and changelog
            store.delete(entity)
            out.changed.pop(entity, None)
            out.evicted[entity] = partition
        return out

    def _one(self, raw: RawRecord, store: StateStore, out: BatchOutput, now_ms: int) -> None:
        fs, encode = self.feature_set, self.fast.encode
        checked = self.validator.validate(raw.value, raw.partition, raw.offset)
        if isinstance(checked, list):
            self._reject(out, raw, checked, now_ms)
            return
        entity = checked["entity_id"]
        state = store.get(entity)
        home = None if state is None else store.partition_of(entity)
        if home is not None and home != raw.partition:
            # Its offsets are not comparable with the state's (an event would pass for one
            # applied before a restart, and be skipped), and another worker may own this
            # partition: an entity's events must share one partition, keyed by the entity.
            elsewhere = Anomaly(
                ReasonCode.WRONG_PARTITION,
                fs.entity_key,
                f"entity {entity!r}'s events are on {self.raw_topic} partition {home}, this one "
                f"came on partition {raw.partition} (its key: {raw.key!r}): key "
                f"{self.raw_topic} records by {fs.entity_key}",
            )
            self._reject(out, raw, [elsewhere], now_ms)
            return
        if state is not None and 0 <= raw.offset <= state.applied_offset:
            out.skipped += 1  # applied before a restart: its outputs were already produced
            return
        if state is not None and store.idle.expired(raw.partition, state.newest_time_ms):
            state = None  # idle longer than HEADWATER_ENTITY_IDLE_TTL_MS: it starts afresh
        fresh = state is None
        if state is None:
            state = fs.new_state()  # stored only once an event is applied to it
        t = checked["event_time_ms"]
        skew = self.max_future_skew_ms
        if skew is not None and t > now_ms + skew:
            ahead = Anomaly(
                ReasonCode.FUTURE_EVENT,
                "event_time_ms",
                f"event time {t} is {t - now_ms} ms ahead of the worker's clock {now_ms} "
                f"(HEADWATER_MAX_FUTURE_SKEW_MS={skew})",
            )
            self._reject(out, raw, [ahead], now_ms)
            return
        if state.is_late(t):
            late = Anomaly(
                ReasonCode.LATE_EVENT,
                "event_time_ms",
                f"event time {t} is more than the grace {fs.grace_ms} ms behind entity "
                f"{entity}'s newest event time {state.newest_time_ms}",
            )
            self._reject(out, raw, [late], now_ms)
            return
        key = entity.encode()
        event = encode(Event.SCHEMA, checked)
        limit = self.max_record_bytes
        if limit is not None and len(event) + len(key) > limit:
            large = Anomaly(
                ReasonCode.RECORD_TOO_LARGE,
                "",
                f"its events record would be {len(event) + len(key)} bytes, over "
                f"HEADWATER_KAFKA_MAX_RECORD_BYTES={limit}",
            )
            self._reject(out, raw, [large], now_ms)
            return
        if fresh:
            store.put(entity, state, raw.partition)
        try:
            values = state.update(t, checked["numeric"], checked["categorical"], raw.offset)
        finally:  # a stored state is always on the idle clock, even one whose update failed
            store.idle.seen(raw.partition, entity, state.newest_time_ms, state.applied_offset)
        record = feature_record(fs, checked, values or {}, now_ms)
        vector = encode(FeatureVector.SCHEMA, record)
        out.records.append(OutRecord("events", raw.partition, key, event, raw.offset))
        out.records.append(OutRecord("features", raw.partition, key, vector, raw.offset))
        out.features.append(FeatureRow(raw.partition, raw.offset, record))
        out.changed[entity] = raw.partition
        out.valid += 1

    def _reject(
        self, out: BatchOutput, raw: RawRecord, anomalies: list[Anomaly], now_ms: int
    ) -> None:
        letter = dead_letter(
            self.raw_topic,
            raw.partition,
            raw.offset,
            anomalies[0].code.value,
            "; ".join(a.describe() for a in anomalies),
            raw.key,
            raw.value,
            now_ms,
        )
        value = self.fast.encode(DeadLetter.SCHEMA, letter.to_avro())
        out.records.append(
            OutRecord("deadletter", raw.partition, self.raw_topic.encode(), value, raw.offset)
        )
        out.rejected += 1
