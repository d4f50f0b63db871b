"""The online store's durable form: entity states in a compacted changelog topic.

The feature worker writes each batch's changed states to the changelog (key: entity id, value:
:meth:`EntityState.to_bytes`), the format a Faust table with raw keys and values uses, so either
engine of the worker can recover the other's state. :class:`ChangelogStore` holds the states in
memory and decodes a recovered state only when it is first used; :func:`catch_up` reads
changelog partitions up to the end they had when called (worker recovery, lookup replicas).

>>> from headwater.streams.feature_module import load_feature_module
>>> fs = load_feature_module("headwater.demo.features").feature_set
>>> state = fs.new_state()
>>> _ = state.update(60_000, {"amount": 12.0}, {"channel": "pos"}, offset=4)
>>> store = ChangelogStore(fs)
>>> store.restore([(1, b"card-1", state.to_bytes()), (1, b"card-2", b"[]"), (1, b"card-2", None)])
3
>>> store.get("card-1").applied_offset, store.get("card-2"), len(store)
(4, None, 1)
>>> store.drop({1}), len(store)
(1, 0)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, MutableMapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from headwater.core.errors import BrokerUnavailable
from headwater.streams.featureset import EntityState, FeatureSet
from headwater.streams.idle import IdleExpiry


class ChangelogStore:
    """Entity states by entity id, each with the partition it belongs to.

    Backed by any mapping of raw keys to states or their changelog bytes: a plain dict for the
    librdkafka engine, a Faust table's local data for the Faust engine. ``idle`` keeps the
    partitions' event-time clocks (:mod:`headwater.streams.idle`), recovered with the states.
    """

    def __init__(
        self,
        feature_set: FeatureSet,
        data: MutableMapping[bytes, object] | None = None,
        idle: IdleExpiry | None = None,
    ) -> None:
        self.feature_set = feature_set
        self._data: MutableMapping[bytes, object] = {} if data is None else data
        self._partition_of: dict[bytes, int] = {}
        self.idle = IdleExpiry(0) if idle is None else idle

    def __len__(self) -> int:
        return len(self._data)

    def get(self, entity: str) -> EntityState | None:
        key = entity.encode()
        value = self._data.get(key)
        if isinstance(value, bytes | bytearray):
            value = EntityState.from_bytes(self.feature_set, bytes(value))
            self._data[key] = value
        return value if isinstance(value, EntityState) else None

    def put(self, entity: str, state: EntityState, partition: int) -> None:
        key = entity.encode()
        self._data[key] = state
        self._partition_of[key] = partition

    def delete(self, entity: str) -> None:
        key = entity.encode()
        self._data.pop(key, None)
        self._partition_of.pop(key, None)

    def partition_of(self, entity: str) -> int | None:
        """The partition of the entity's state: its changelog's, and its events'."""
        return self._partition_of.get(entity.encode())

    def state_bytes(self, entity: str) -> bytes:
        """The changelog value of an entity's state."""
        state = self.get(entity)
        if state is None:
            raise KeyError(f"no state for entity {entity!r}")
        return state.to_bytes()

    def restore(self, records: Iterable[tuple[int, bytes, bytes | None]]) -> int:
        """Apply changelog records (partition, key, value; a None value deletes) as
        :func:`catch_up` yields them; returns how many."""
        count = 0
        for partition, key, value in records:
            if value is None:
                self._data.pop(key, None)
                self._partition_of.pop(key, None)
                self.idle.forget(partition, key.decode())
            else:
                self._data[key] = value
                self._partition_of[key] = partition
                tail = _newest_and_offset(value)
                if tail is not None:  # else not a state: it fails naming itself when used
                    self.idle.seen(partition, key.decode(), *tail)
            count += 1
        return count

    def drop(self, partitions: set[int]) -> int:
        """Forget the states of partitions this worker no longer owns; returns how many."""
        gone = [key for key, p in self._partition_of.items() if p in partitions]
        for key in gone:
            del self._partition_of[key]
            self._data.pop(key, None)
        self.idle.drop(partitions)
        return len(gone)


def _newest_and_offset(value: bytes) -> tuple[int, int] | None:
    """A changelog state's newest event time and applied offset without decoding the rest:
    both formats of :meth:`EntityState.to_bytes` end with ``newest,offset,events]``."""
    parts = value.rsplit(b",", 3)
    try:
        return int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return None


def read_from_beginning(
    consumer: Consumer, topic: str, partitions: Iterable[int], timeout_s: float
) -> Iterator[tuple[int, bytes, bytes | None]]:
    """(partition, key, value) of every record of ``partitions`` from the beginning to their
    ends as of this call, through a consumer not assigned yet. Their ends are asked before it
    is assigned, when no fetch of its own is ahead of the question on its connection: asked
    after, each waited behind its first fetch (1,700 states restored in 0.6 s against 0.2)."""
    owned = list(partitions)
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1]
        for p in owned
    }
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in owned])
    yield from catch_up(consumer, topic, owned, timeout_s, ends=ends)


def catch_up(
    consumer: Consumer,
    topic: str,
    partitions: Iterable[int],
    timeout_s: float,
    *,
    ends: Mapping[int, int] | None = None,
    cached: bool = False,
) -> Iterator[tuple[int, bytes, bytes | None]]:
    """(partition, key, value) of every record between the consumer's positions on the
    assigned ``partitions`` and their ends (given, or as of this call); fails naming the topic
    if the broker does not deliver them within ``timeout_s``. With ``cached``, a partition's
    end is the high watermark of the consumer's latest fetch where it has one (a consumer that
    keeps following: its fetches long-poll at the end, and return as soon as a record
    arrives)."""
    targets = {}
    for partition in partitions:
        tp = TopicPartition(topic, partition)
        high = -1
        if ends is not None:
            high = ends[partition]
        elif cached:
            high = consumer.get_watermark_offsets(tp, cached=True)[1]
        if high < 0:  # not fetched yet (OFFSET_INVALID), or not cached: ask the broker
            # On a consumer whose fetch is long-polling, the broker answers this only after
            # that fetch: up to its fetch.wait.max.ms (500 ms) a partition.
            _, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        position = consumer.position([tp])[0].offset
        if high > max(position, 0):
            targets[partition] = high
    deadline = time.monotonic() + timeout_s
    while targets:
        if time.monotonic() > deadline:
            raise BrokerUnavailable(
                f"reading changelog {topic} partitions {sorted(targets)} up to offsets "
                f"{targets} took longer than {timeout_s:.0f} s"
            )
        for message in consumer.consume(5000, timeout=0.2):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise BrokerUnavailable(f"reading changelog {topic}: {error.str()}")
                continue
            part, offset, key = message.partition(), message.offset(), message.key()
            if key is not None and part is not None:
                yield part, key, message.value()
            if part in targets and offset is not None and offset + 1 >= targets[part]:
                del targets[part]
