"""The ClickHouse sink: every topic of DESIGN.md into its warehouse table, at least once and
idempotently.

* Batches are bounded by rows (``max_rows``) and time (``max_wait_s``).
* Offsets are committed only after the batch's insert succeeded; a crash in between redelivers
  the batch, and the tables' ReplacingMergeTree keys make the re-insert replace itself (read
  with ``FINAL``).
* While the warehouse fails, the sink pauses its partitions (nothing more is fetched, nothing
  piles up in memory) and retries the same batch with exponential backoff.
* A record that cannot be decoded goes to ``deadletter`` and the sink moves on.

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
>>> SinkConfig().max_rows, SinkStats().inserted
(5000, 0)
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from headwater.core.errors import RecordRefused, SchemaError, WarehouseError
from headwater.core.logs import configure_logging
from headwater.core.settings import HeadwaterSettings, load_settings
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import make_consumer
from headwater.infra.metrics import METRICS, serve_process_metrics
from headwater.infra.migrations import table_for_topic
from headwater.infra.warehouse import Warehouse, connect_warehouse
from headwater.schemas.codec import AvroCodec
from headwater.schemas.dead_letters import dead_letter
from headwater.schemas.topics import TOPICS
from headwater.streams.errors import SinkError

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
        values: list[Any] = []
        for column in self.columns:
            value = record[column]
            if column in self.stringify:
                value = {k: str(v) for k, v in value.items()}
            values.append(value)
        if self.with_topic:
            values.append(full_topic)
        return [*values, partition, offset]

    @property
    def insert_columns(self) -> list[str]:
        topic = ["_topic"] if self.with_topic else []
        return [*self.columns, *topic, "_partition", "_offset"]


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


Batch = dict[str, list[list[Any]]]


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
        self._codec: AvroCodec = self._bus.codec
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
        rows, offsets = self._rows(messages)
        self._insert(rows)
        if self._after_insert is not None:
            self._after_insert(rows)
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

    def _rows(self, messages: list[Message]) -> tuple[Batch, list[TopicPartition]]:
        rows: Batch = {}
        ends: dict[tuple[str, int], int] = {}
        for message in messages:
            full, partition, offset = message.topic() or "", message.partition(), message.offset()
            assert partition is not None and offset is not None
            ends[(full, partition)] = max(ends.get((full, partition), -1), offset + 1)
            topic = self._by_full_name[full]
            mapping = self._maps[topic]
            try:
                record = self._record(topic, message)
                row = mapping.row(record, full, partition, offset)
            except (SchemaError, KeyError, AttributeError, TypeError) as error:
                self._dead_letter(message, error)
                continue
            rows.setdefault(mapping.table, []).append(row)
        offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items()]
        return rows, offsets

    def _record(self, topic: str, message: Message) -> Mapping[str, Any]:
        value = message.value()
        if topic == "events.raw":
            key = message.key()
            return {
                "key": key.decode(errors="replace") if key else "",
                "value": value or b"",
                "kafka_timestamp_ms": message.timestamp()[1],
            }
        if not value:
            raise SchemaError(f"an empty record on {topic}")
        _, record = self._codec.decode(value)
        return record

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

    def _insert(self, rows: Batch) -> None:
        """Insert every table's rows; while the warehouse fails, pause and back off."""
        delay = self.config.backoff_initial_s
        pending = dict(rows)
        paused: list[TopicPartition] = []
        while pending:
            table, table_rows = next(iter(pending.items()))
            mapping = next(m for m in self._maps.values() if m.table == table)
            try:
                self.warehouse.insert(table, mapping.insert_columns, table_rows)
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
            self.stats.inserted += len(table_rows)
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
