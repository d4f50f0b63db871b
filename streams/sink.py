"""The ClickHouse sink: every topic of DESIGN.md into its warehouse table, at least once and
idempotently.

* Batches are bounded by rows (``max_rows``) and time (``max_wait_s``).
* Offsets are committed only after the batch's insert succeeded; a crash in between redelivers
  the batch, and the tables' ReplacingMergeTree keys make the re-insert replace itself (read
  with ``FINAL``).
* While the warehouse fails, the sink pauses its partitions (nothing more is fetched, nothing
  piles up in memory) and retries the same batch with exponential backoff.
* A record that cannot be decoded goes to ``deadletter`` and the sink moves on.
* A batch is built as columns (table → column → values, what ``Warehouse.insert_columns``
  takes). A topic's records of one writer schema the native codec covers are decoded straight
  into Arrow columns (:mod:`headwater.streams.columnar`); any others record by record, by each
  writer schema's native reader, looked up once (:class:`RecordDecoder`), and pivoted into
  columns.

It writes through :func:`headwater.infra.warehouse.connect_warehouse` (``python -m
headwater.streams.sink``), so
under ``headwater up`` it talks to the warehouse host that owns the embedded engine.

>>> labels = TableMap("labels", "labels", ("entity_id", "label"), frozenset())
>>> labels.row({"entity_id": "c1", "label": 1.0, "request_id": ""}, "labels", 2, 40)
['c1', 1.0, 2, 40]
>>> labels.insert_columns
['entity_id', 'label', '_partition', '_offset']
>>> raw = TableMap("events.raw", "events_raw", ("key",), frozenset(), with_topic=True)
>>> raw.row({"key": "c1"}, "demo-events.raw", 0, 7), raw.insert_columns
(['c1', 'demo-events.raw', 0, 7], ['key', '_topic', '_partition', '_offset'])
>>> runs = TableMap("runs", "runs", ("run_id", "params"), frozenset({"params"}))
>>> runs.columns_of([{"run_id": "r1", "params": {"depth": 3}}], "runs", [0], [12])
{'run_id': ['r1'], 'params': [{'depth': '3'}], '_partition': [0], '_offset': [12]}
>>> SinkConfig().max_rows, SinkStats().inserted
(5000, 0)
"""

from __future__ import annotations

import gc
import logging
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from headwater.core.errors import RecordRefused, SchemaError, WarehouseError
from headwater.core.logs import configure_logging
from headwater.core.settings import HeadwaterSettings, load_settings
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import make_consumer
from headwater.infra.metrics import METRICS, serve_process_metrics
from headwater.infra.migrations import table_for_topic
from headwater.infra.warehouse import Warehouse, connect_warehouse, plain_columns
from headwater.schemas.codec import SINGLE_OBJECT_MAGIC, AvroCodec
from headwater.schemas.dead_letters import dead_letter
from headwater.schemas.topics import TOPICS
from headwater.streams.columnar import Columns, decode_columns
from headwater.streams.errors import SinkError

if TYPE_CHECKING:
    import headwater_native

log = logging.getLogger("headwater.streams.sink")


@dataclass(frozen=True)
class SinkConfig:
    max_rows: int = 5000
    max_wait_s: float = 1.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0


@dataclass
class SinkStats:
    consumed: int = 0
    inserted: int = 0
    deadlettered: int = 0
    batches: int = 0
    failed_inserts: int = 0
    pauses: int = 0


@dataclass(frozen=True)
class TableMap:
    """How one topic's records become rows of its table. Tables keyed by where a record was
    read (``with_topic``: a ``_topic`` column, migration 003) also get the full topic name, so
    runs under different topic prefixes never replace each other's rows."""

    topic: str
    table: str
    columns: tuple[str, ...]
    stringify: frozenset[str]  # Map(String, String) columns whose values may be numbers
    with_topic: bool = False

    def row(
        self, record: Mapping[str, Any], full_topic: str, partition: int, offset: int
    ) -> list[Any]:
        """One record's row, in the order of :attr:`insert_columns`; KeyError, AttributeError
        or TypeError where the record does not fit (a field missing, a map that is not one)."""
        values: list[Any] = []
        for column in self.columns:
            value = record[column]
            if column in self.stringify:
                value = _stringified(value)
            values.append(value)
        if self.with_topic:
            values.append(full_topic)
        return [*values, partition, offset]

    def columns_of(
        self,
        records: Sequence[Mapping[str, Any]],
        full_topic: str,
        partitions: list[int],
        offsets: list[int],
    ) -> dict[str, Sequence[Any]]:
        """Records of ``full_topic`` (read at ``partitions`` and ``offsets``, one each) as the
        table's columns, named as :attr:`insert_columns`; raises what :meth:`row` raises where
        a record does not fit."""
        columns: dict[str, Sequence[Any]] = {}
        for column in self.columns:
            values = [record[column] for record in records]
            if column in self.stringify:
                values = [_stringified(value) for value in values]
            columns[column] = values
        return self._placed(columns, full_topic, partitions, offsets)

    def columns_from(
        self,
        fields: Mapping[str, Any],
        full_topic: str,
        partitions: list[int],
        offsets: list[int],
    ) -> dict[str, Sequence[Any]] | None:
        """The table's columns from the records' fields decoded as Arrow arrays (field → array,
        :func:`~headwater.streams.columnar.decode_columns`); None where they do not fit as they
        are (a column missing, a map column whose values are not strings to stringify): then
        the records go as :meth:`columns_of` takes them.

        >>> import pyarrow as pa
        >>> labels = TableMap("labels", "labels", ("entity_id",), frozenset())
        >>> labels.columns_from({"entity_id": pa.array(["c1"])}, "labels", [0], [4])["_offset"]
        [4]
        >>> labels.columns_from({"label": pa.array([1.0])}, "labels", [0], [4]) is None
        True
        """
        columns: dict[str, Sequence[Any]] = {}
        for column in self.columns:
            values = fields.get(column)
            if values is None:
                return None
            if column in self.stringify and not str(values.type).startswith("map<string, string"):
                return None
            columns[column] = values
        return self._placed(columns, full_topic, partitions, offsets)

    def _placed(
        self,
        columns: dict[str, Sequence[Any]],
        full_topic: str,
        partitions: list[int],
        offsets: list[int],
    ) -> dict[str, Sequence[Any]]:
        """``columns`` with where each record was read: its topic (where the table keeps it),
        partition and offset."""
        if self.with_topic:
            columns["_topic"] = [full_topic] * len(partitions)
        columns["_partition"] = partitions
        columns["_offset"] = offsets
        return columns

    @property
    def insert_columns(self) -> list[str]:
        topic = ["_topic"] if self.with_topic else []
        return [*self.columns, *topic, "_partition", "_offset"]


def _stringified(value: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in value.items()}


# Columns the sink fills from where a record was read, not from the record.
_SINK_COLUMNS = ("_topic", "_partition", "_offset", "_ingested_at")


def table_maps(warehouse: Warehouse) -> dict[str, TableMap]:
    """Every topic's table map, read from the warehouse's own column list."""
    maps = {}
    for topic in TOPICS:
        table = table_for_topic(topic)
        result = warehouse.query(
            "SELECT name, type FROM system.columns "
            f"WHERE database = '{warehouse.database}' AND table = '{table}' ORDER BY position"
        )
        if not result.rows:
            raise SinkError(
                f"warehouse table {warehouse.database}.{table} for topic {topic} is missing; "
                "apply the migrations (`headwater up` does)"
            )
        columns = [(n, t) for n, t in result.rows if n not in _SINK_COLUMNS]
        maps[topic] = TableMap(
            topic,
            table,
            tuple(n for n, _ in columns),
            frozenset(n for n, t in columns if t == "Map(String, String)"),
            with_topic=any(n == "_topic" for n, _ in result.rows),
        )
    return maps


Batch = dict[str, dict[str, Sequence[Any]]]
"""One batch: each table's rows as columns (column → values: a list, or an Arrow array where
the native codec decoded the column)."""


class RecordDecoder:
    """Decodes record values as :meth:`AvroCodec.decode` does, raising :class:`SchemaError`.

    A record in single-object encoding of a current schema the native codec covers is read by
    that schema's native reader, looked up once per header (the codec looks its writer up for
    every record); any other (Confluent framing, the legacy fingerprint order, which is counted,
    an older version resolved into the current one, an unknown writer) goes to the codec.

    >>> from headwater.schemas.catalog import SchemaCatalog
    >>> codec = AvroCodec(SchemaCatalog.default())
    >>> label = {"request_id": "", "entity_id": "c1", "event_id": "", "label": 1.0,
    ...          "event_time_ms": 5, "labeled_at_ms": 9}
    >>> data = codec.encode("dev.headwater.Label", label)
    >>> RecordDecoder(codec).decode(data) == codec.decode(data)[1] == label
    True
    >>> RecordDecoder(codec).decode(data[:-3])
    Traceback (most recent call last):
    ...
    headwater.core.errors.SchemaError: cannot decode a dev.headwater.Label record: ...
    """

    def __init__(self, codec: AvroCodec) -> None:
        self.codec = codec
        self._readers: dict[bytes, tuple[str, headwater_native.AvroType]] = {}

    def decode_all(
        self, values: Sequence[bytes]
    ) -> tuple[list[dict[str, Any]], dict[int, SchemaError]]:
        """The records of the values that decode, in order, and the error of each that does
        not (by its index in ``values``). Values of one writer the native codec reads go in
        one pass; when one of them fails, they all go through :meth:`decode` one by one."""
        header = values[0][:10] if values else b""
        found = self._readers.get(header) or self._reader(header)
        if found is not None and all(value.startswith(header) for value in values):
            try:  # a reader of a record schema makes dicts
                return [found[1].decode(value, 10) for value in values], {}
            except Exception:  # the one that failed is found below
                pass
        records: list[dict[str, Any]] = []
        failures: dict[int, SchemaError] = {}
        for index, value in enumerate(values):
            try:
                records.append(self.decode(value))
            except SchemaError as error:
                failures[index] = error
        return records, failures

    def decode_columns(self, values: list[bytes]) -> Columns | None:
        """Each field of the values as an Arrow array (:mod:`headwater.streams.columnar`), and
        why each value that does not decode does not (as :meth:`decode` says it), where the
        batch's writer (the header most values carry) is one the native codec reads and no
        value of another writer decodes (a garbled header, an empty value). None otherwise:
        then :meth:`decode_all` takes them one by one."""
        if not values:
            return None
        header = values[0][:10]
        others: list[int] = []
        if len(header) < 10 or not all(value.startswith(header) for value in values):
            header = Counter(value[:10] for value in values).most_common(1)[0][0]
            others = [i for i, value in enumerate(values) if not value.startswith(header)]
        found = self._readers.get(header) or self._reader(header)
        if found is None:
            return None
        failures: dict[int, str] = {}
        for index in others:
            try:
                self.decode(values[index])
            except SchemaError as error:
                failures[index] = str(error)
                continue
            return None  # a second writer in the batch: record by record
        # The values of the batch's writer, and where each sits among all (the usual batch,
        # one writer throughout: all of them, in place).
        kept = [i for i in range(len(values)) if i not in failures] if others else None
        ours = values if kept is None else [values[i] for i in kept]
        columns = decode_columns(found[1], ours, 10)
        if columns is None:
            return None
        for index, why in columns.failures.items():
            place = index if kept is None else kept[index]
            failures[place] = f"cannot decode a {found[0]} record: {why}"
        return Columns(columns.fields, failures)

    def decode(self, data: bytes) -> dict[str, Any]:
        if not data:
            raise SchemaError("an empty record")
        found = self._readers.get(data[:10]) or self._reader(data[:10])
        if found is None:
            return self.codec.decode(data)[1]
        name, reader = found
        try:
            record = reader.decode(data, 10)
        except Exception as error:  # the native codec raises ValueError naming the field
            raise SchemaError(f"cannot decode a {name} record: {error}") from error
        if not isinstance(record, dict):
            raise SchemaError(f"{name} did not decode to a record")
        return record

    def _reader(self, header: bytes) -> tuple[str, headwater_native.AvroType] | None:
        if len(header) < 10 or header[:2] != SINGLE_OBJECT_MAGIC:
            return None
        catalog = self.codec.catalog
        writer = catalog.writer_of(header[2:], count=False)
        if writer is None or writer.fingerprint != header[2:] or catalog.current(writer) != writer:
            return None
        native = self.codec.native_of(writer)
        if native is None:
            return None
        self._readers[header] = (writer.name, native)
        return self._readers[header]


@dataclass
class _Read:
    """The records of one topic in a batch, with where each was read."""

    records: list[Mapping[str, Any]] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    columns: dict[str, Sequence[Any]] | None = None  # the table's columns, decoded as such

    def without(self, left_out: Mapping[int, object]) -> _Read:
        """The messages and where they were read, but those at the indices ``left_out``."""
        if not left_out:
            return self
        kept = [i for i in range(len(self.messages)) if i not in left_out]
        return _Read(
            [],
            [self.messages[i] for i in kept],
            [self.partitions[i] for i in kept],
            [self.offsets[i] for i in kept],
        )


class Batcher:
    """Turns consumed records into a :data:`Batch` and the offsets to commit after its insert;
    a record it cannot decode or fit into its table goes to ``reject`` (the sink dead-letters
    it). ``topics``: each full topic name consumed → its topic (a key of ``maps``)."""

    def __init__(
        self,
        maps: Mapping[str, TableMap],
        topics: Mapping[str, str],
        codec: AvroCodec,
        reject: Callable[[Message, Exception], None],
    ) -> None:
        self._maps = maps
        self._topics = topics
        self._decoder = RecordDecoder(codec)
        self._reject = reject

    def batch(self, messages: Sequence[Message]) -> tuple[Batch, list[TopicPartition]]:
        """The messages' columns per table, and the offsets that follow them."""
        batch: Batch = {}
        with _collection_paused():
            reads, ends = self._read(messages)
            for full, read in reads.items():
                mapping = self._maps[self._topics[full]]
                columns = self._columns(mapping, full, read)
                if mapping.table not in batch:
                    batch[mapping.table] = columns
                else:  # another topic name into the same table
                    joined = plain_columns(batch[mapping.table])
                    for name, values in plain_columns(columns).items():
                        joined[name] = [*joined[name], *values]
                    batch[mapping.table] = joined
        offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items()]
        return batch, offsets

    def _read(
        self, messages: Sequence[Message]
    ) -> tuple[dict[str, _Read], dict[tuple[str, int], int]]:
        """The decoded records per full topic name, and the offset after each partition's
        last message (a partition's messages come in order; were one read again after a
        rebalance, committing the earlier offset only delivers it once more)."""
        groups: dict[str, list[Message]] = {}
        for message in messages:
            full = message.topic() or ""
            group = groups.get(full)
            if group is None:
                group = groups[full] = []
            group.append(message)
        reads: dict[str, _Read] = {}
        ends: dict[tuple[str, int], int] = {}
        for full, group in groups.items():
            partitions = [m.partition() or 0 for m in group]
            offsets = [m.offset() or 0 for m in group]
            ends.update({(full, p): o + 1 for p, o in zip(partitions, offsets, strict=True)})
            if self._topics[full] == "events.raw":
                reads[full] = _Read([_raw(m) for m in group], group, partitions, offsets)
                continue
            values = [m.value() or b"" for m in group]
            decoded = self._decoder.decode_columns(values)
            if decoded is not None:
                kept = _Read([], group, partitions, offsets).without(decoded.failures)
                mapping = self._maps[self._topics[full]]
                columns = mapping.columns_from(decoded.fields, full, kept.partitions, kept.offsets)
                if columns is not None:
                    for index, why in decoded.failures.items():
                        self._reject(group[index], SchemaError(why))
                    if kept.messages:
                        kept.columns = columns
                        reads[full] = kept
                    continue
            records, failures = self._decoder.decode_all(values)
            read = _Read([], group, partitions, offsets)
            if failures:
                for index, error in failures.items():
                    self._reject(group[index], error)
                read = read.without(failures)
            read.records = list(records)
            reads[full] = read
        return reads, ends

    def _columns(self, mapping: TableMap, full: str, read: _Read) -> dict[str, Sequence[Any]]:
        """The table's columns of one topic's records; records that do not fit the table are
        rejected (looked for one by one only when the whole does not fit)."""
        if read.columns is not None:
            return read.columns
        try:
            return mapping.columns_of(read.records, full, read.partitions, read.offsets)
        except (KeyError, AttributeError, TypeError):
            pass
        fitting = _Read()
        for record, message, partition, offset in zip(
            read.records, read.messages, read.partitions, read.offsets, strict=True
        ):
            try:
                mapping.row(record, full, partition, offset)
            except (KeyError, AttributeError, TypeError) as error:
                self._reject(message, error)
                continue
            fitting.records.append(record)
            fitting.partitions.append(partition)
            fitting.offsets.append(offset)
        return mapping.columns_of(fitting.records, full, fitting.partitions, fitting.offsets)


def _raw(message: Message) -> dict[str, Any]:
    """A record of ``events.raw``: its bytes as they came, with the key and broker time."""
    key = message.key()
    return {
        "key": key.decode(errors="replace") if key else "",
        "value": message.value() or b"",
        "kafka_timestamp_ms": message.timestamp()[1],
    }


@contextmanager
def _collection_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a batch is built: its thousands of records all
    live until the insert, so a collection in between only walks them (a fifth of the
    decoding time)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class ClickHouseSink:
    """Consumes every topic (group ``<prefix>headwater-sink``) into the warehouse."""

    def __init__(
        self,
        settings: HeadwaterSettings,
        warehouse: Warehouse,
        config: SinkConfig | None = None,
        after_insert: Callable[[Batch], None] | None = None,
    ) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.config = config or SinkConfig()
        self.stats = SinkStats()
        self._after_insert = after_insert
        self._maps = table_maps(warehouse)
        self._by_full_name = {settings.topic(t): t for t in TOPICS}
        self._bus = EventBus(settings)
        self._batcher = Batcher(self._maps, self._by_full_name, self._bus.codec, self._dead_letter)
        self._consumer: Consumer = make_consumer(
            settings,
            settings.topic("headwater-sink"),
            **{"max.poll.interval.ms": 600_000, "queued.max.messages.kbytes": 16_384},
        )
        self._consumer.subscribe(list(self._by_full_name))

    def run(self, stop: Callable[[], bool]) -> SinkStats:
        """Batch, insert, commit until ``stop()`` is true; then close the consumer."""
        try:
            while not stop():
                self.step()
        finally:
            self._consumer.close()
            self._bus.flush()
        return self.stats

    def step(self) -> int:
        """One batch: collect, insert (retrying while the warehouse fails), commit."""
        messages = self._collect()
        if not messages:
            return 0
        started = time.perf_counter()
        batch, offsets = self._batcher.batch(messages)
        self._insert(batch)
        if self._after_insert is not None:
            self._after_insert(batch)
        self._bus.flush()  # dead letters of this batch are safe before its offsets are
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:  # the broker is away: the next batch's commit covers it
            log.warning("committing the sink's offsets failed (%s); retried with the next", error)
        self.stats.batches += 1
        self._count(messages, time.perf_counter() - started)
        return len(messages)

    def _count(self, messages: list[Message], seconds: float) -> None:
        """Per-topic records and the batch's time (insert retries included) on /metrics."""
        per_topic: dict[str, int] = {}
        for message in messages:
            topic = self._by_full_name[message.topic() or ""]
            per_topic[topic] = per_topic.get(topic, 0) + 1
        for topic, count in per_topic.items():
            METRICS.records.labels(topic=topic, stage="sink").inc(count)
        METRICS.batch_duration.labels(stage="sink").observe(seconds)
        METRICS.batch_size.labels(stage="sink").observe(len(messages))

    def _collect(self) -> list[Message]:
        config = self.config
        deadline = time.monotonic() + config.max_wait_s
        messages: list[Message] = []
        while len(messages) < config.max_rows:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            got = self._consumer.consume(config.max_rows - len(messages), timeout=left)
            for message in got:
                error = message.error()
                if error is None:
                    messages.append(message)
                elif error.code() != KafkaError._PARTITION_EOF:
                    log.warning("sink consumer: %s", error.str())
        self.stats.consumed += len(messages)
        return messages

    def _dead_letter(self, message: Message, error: Exception) -> None:
        letter = dead_letter(
            message.topic() or "",
            message.partition() or 0,
            message.offset() or 0,
            "BAD_ENCODING" if isinstance(error, SchemaError) else "WRONG_TYPE",
            f"the sink cannot write it to the warehouse: {error}",
            message.key(),
            message.value(),
        )
        try:
            self._bus.send("deadletter", letter)
        except RecordRefused as refused:  # bounded, so only a broker with a tiny limit does this
            log.error(
                "%s[%d]@%d: its dead letter was refused (%s); the record stays on its topic only",
                letter.source_topic,
                letter.source_partition,
                letter.source_offset,
                refused,
            )
            return
        self.stats.deadlettered += 1
        METRICS.deadletters.labels(
            source_topic=letter.source_topic, reason_code=letter.reason_code
        ).inc()

    def _insert(self, batch: Batch) -> None:
        """Insert every table's columns; while the warehouse fails, pause and back off."""
        delay = self.config.backoff_initial_s
        pending = {table: columns for table, columns in batch.items() if columns["_offset"]}
        paused: list[TopicPartition] = []
        while pending:
            table, columns = next(iter(pending.items()))
            try:
                self.warehouse.insert_columns(table, columns)
            except WarehouseError as error:
                self.stats.failed_inserts += 1
                METRICS.failures.labels(stage="sink", reason="insert").inc()
                if not paused:
                    paused = self._consumer.assignment()
                    self._consumer.pause(paused)
                    self.stats.pauses += 1
                    METRICS.paused.labels(stage="sink").set(1)
                log.warning("insert into %s failed (%s); retrying in %.1f s", table, error, delay)
                time.sleep(delay)
                delay = min(delay * 2, self.config.backoff_max_s)
                continue
            self.stats.inserted += len(columns["_offset"])
            del pending[table]
        if paused:
            self._consumer.resume(paused)
            METRICS.paused.labels(stage="sink").set(0)


def main() -> None:
    configure_logging("sink")
    settings = load_settings()
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    serve_process_metrics(settings, "sink")
    warehouse = connect_warehouse(settings)
    try:
        stats = ClickHouseSink(settings, warehouse).run(lambda: stopping)
    finally:
        warehouse.close()
    log.info("sink stopped: %s", stats)


if __name__ == "__main__":
    main()
