"""The ClickHouse sink on the real broker and the real embedded engine."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from headwater.core.errors import WarehouseError
from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus, make_codec
from headwater.infra.kafka_clients import ensure_topics
from headwater.infra.migrations import table_for_topic
from headwater.infra.warehouse import ChdbWarehouse, Columns, QueryResult, columns_of
from headwater.schemas.dead_letters import dead_letter
from headwater.schemas.models import Label, Prediction
from headwater.schemas.topics import TOPICS
from headwater.streams.sink import Batch, ClickHouseSink, SinkConfig, SinkStats
from tests.unit.test_schemas import SAMPLES

pytestmark = pytest.mark.integration

FAST = SinkConfig(max_rows=200, max_wait_s=0.3, backoff_initial_s=0.05, backoff_max_s=0.2)


class SimulatedCrash(Exception):
    """The process dies after the insert and before the commit."""


class FlakyWarehouse:
    """The real warehouse, failing its first ``failures`` inserts as an outage would."""

    def __init__(self, inner: ChdbWarehouse, failures: int) -> None:
        self.inner, self.failures, self.database = inner, failures, inner.database

    def command(self, sql: str) -> None:
        self.inner.command(sql)

    def query(self, sql: str) -> QueryResult:
        return self.inner.query(sql)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        return self.insert_columns(table, columns_of(columns, rows))

    def insert_columns(self, table: str, columns: Columns) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise WarehouseError("simulated outage: connection refused")
        return self.inner.insert_columns(table, columns)

    def close(self) -> None:
        self.inner.close()


def _drain(sink: ClickHouseSink, rows: int, timeout_s: float = 60.0) -> SinkStats:
    deadline = time.monotonic() + timeout_s
    return sink.run(lambda: sink.stats.inserted >= rows or time.monotonic() > deadline)


def _labels(settings: HeadwaterSettings, unique: str, n: int) -> None:
    bus = EventBus(settings)
    for i in range(n):
        label = Label(
            entity_id=f"{unique}-{i}", label=float(i % 2), event_time_ms=i, labeled_at_ms=i
        )
        bus.send("labels", label)
    bus.flush()


def _count(warehouse: ChdbWarehouse, unique: str, final: bool = True) -> int:
    sql = (
        f"SELECT count() FROM headwater.labels {'FINAL' if final else ''} "
        f"WHERE entity_id LIKE '{unique}-%'"
    )
    return int(warehouse.query(sql).scalar())


def _table_counts(warehouse: ChdbWarehouse) -> dict[str, int]:
    return {
        topic: int(
            # FINAL: a background merge of earlier duplicates must not change the count
            warehouse.query(
                f"SELECT count() FROM headwater.{table_for_topic(topic)} FINAL"
            ).scalar()
        )
        for topic in TOPICS
    }


def test_every_topic_lands_in_its_table(
    isolated: HeadwaterSettings, warehouse: ChdbWarehouse
) -> None:
    before = _table_counts(warehouse)
    bus = EventBus(isolated)
    for topic, spec in TOPICS.items():
        if spec.model is None:
            bus.send_bytes(topic, b'{"card_id": "c"}', b"c")
        else:
            bus.send(topic, spec.model.model_validate(SAMPLES[spec.model.__name__]))
    bus.flush()
    stats = _drain(ClickHouseSink(isolated, warehouse, FAST), len(TOPICS))
    assert stats.inserted == len(TOPICS) and stats.deadlettered == 0
    after = _table_counts(warehouse)
    assert {t: after[t] - before[t] for t in TOPICS} == dict.fromkeys(TOPICS, 1)
    raw = warehouse.query(
        "SELECT value, _partition, _offset FROM headwater.events_raw ORDER BY _ingested_at DESC"
    ).rows[0]
    assert raw[0] == '{"card_id": "c"}' and raw[2] == 0


def test_crash_between_insert_and_commit_leaves_no_duplicates(
    isolated: HeadwaterSettings, warehouse: ChdbWarehouse, unique: str
) -> None:
    _labels(isolated, unique, 120)

    def crash(rows: Batch) -> None:
        raise SimulatedCrash("killed after the insert, before the commit")

    with pytest.raises(SimulatedCrash):
        _drain(ClickHouseSink(isolated, warehouse, FAST, after_insert=crash), 120)
    written_before_crash = _count(warehouse, unique, final=False)
    assert written_before_crash > 0
    again = _drain(ClickHouseSink(isolated, warehouse, FAST), 120)
    assert again.inserted >= 120  # the uncommitted batch was delivered again
    assert _count(warehouse, unique, final=False) == written_before_crash + again.inserted
    assert _count(warehouse, unique) == 120


def test_warehouse_outage_pauses_and_retries_without_loss(
    isolated: HeadwaterSettings, warehouse: ChdbWarehouse, unique: str
) -> None:
    _labels(isolated, unique, 50)
    flaky = FlakyWarehouse(warehouse, failures=4)
    stats = _drain(ClickHouseSink(isolated, flaky, FAST), 50)
    assert stats.failed_inserts == 4 and stats.pauses >= 1
    assert stats.inserted == 50
    assert _count(warehouse, unique) == 50


def test_undecodable_record_goes_to_deadletter(
    isolated: HeadwaterSettings, warehouse: ChdbWarehouse, unique: str
) -> None:
    _labels(isolated, unique, 3)
    bus = EventBus(isolated)
    bus.send_bytes("labels", b"\xc3\x01not avro at all", b"k")
    bus.flush()
    stats = _drain(ClickHouseSink(isolated, warehouse, FAST), 4)
    assert stats.inserted == 4  # three labels, then the dead letter itself
    assert stats.deadlettered == 1
    row = warehouse.query(
        "SELECT reason_code, original_value FROM headwater.deadletter FINAL "
        f"WHERE source_topic = '{isolated.topic('labels')}'"
    ).rows
    assert len(row) == 1 and row[0][0] == "BAD_ENCODING"
    assert row[0][1].endswith("not avro at all")


def test_a_truncated_record_among_good_ones_is_dead_lettered_alone(
    isolated: HeadwaterSettings, warehouse: ChdbWarehouse, unique: str
) -> None:
    """A record of the batch's own schema that ends early: it goes to ``deadletter`` naming the
    field where it ends, every other record of its batch lands, and the counts add up."""
    bus = EventBus(isolated)
    codec = make_codec(isolated)
    labels = [
        Label(entity_id=f"{unique}-{i}", label=1.0, event_time_ms=i, labeled_at_ms=i)
        for i in range(7)
    ]
    for i, label in enumerate(labels):
        value = codec.encode(Label.SCHEMA, label.to_avro())
        bus.send_bytes("labels", value[:-4] if i == 3 else value, label.entity_id.encode())
    bus.flush()
    stats = _drain(ClickHouseSink(isolated, warehouse, FAST), 7)
    assert stats.consumed == 8  # seven labels, then the dead letter itself
    assert (stats.inserted, stats.deadlettered) == (7, 1)
    assert _count(warehouse, unique) == 6
    row = warehouse.query(
        "SELECT reason_code, reason FROM headwater.deadletter FINAL "
        f"WHERE source_topic = '{isolated.topic('labels')}'"
    ).rows
    assert len(row) == 1 and row[0][0] == "BAD_ENCODING"
    assert "dev.headwater.Label: " in row[0][1] and "ends early" in row[0][1]


def test_runs_under_other_topic_prefixes_keep_their_own_rows(
    kafka: HeadwaterSettings, warehouse: ChdbWarehouse, unique: str
) -> None:
    """events_raw, deadletter and predictions rows are keyed with the topic they were read from:
    the same offsets, or the same request id, under two prefixes (two demo runs of one seed)
    are two rows, not one replacing the other."""
    runs = [kafka.model_copy(update={"topic_prefix": f"p{n}-{unique}-"}) for n in (1, 2)]
    letter = dead_letter(
        f"shared-{unique}", 0, 0, "SAME", "the same rejection in both runs", None, None, 1
    )
    prediction = Prediction.model_validate(
        {**SAMPLES["Prediction"], "request_id": f"tx-{unique}", "model": f"m-{unique}"}
    )
    for run in runs:
        ensure_topics(run)
        bus = EventBus(run)
        bus.send_bytes("events.raw", f'{{"run": "{unique}"}}'.encode(), unique.encode())
        bus.send("deadletter", letter)
        bus.send("predictions", prediction)
        bus.flush()
        assert _drain(ClickHouseSink(run, warehouse, FAST), 3).inserted == 3

    raw = warehouse.query(
        "SELECT _topic FROM headwater.events_raw FINAL "
        f'WHERE value = \'{{"run": "{unique}"}}\' ORDER BY _topic'
    ).rows
    assert [r[0] for r in raw] == [run.topic("events.raw") for run in runs]
    dead = warehouse.query(
        "SELECT _topic FROM headwater.deadletter FINAL "
        f"WHERE source_topic = 'shared-{unique}' ORDER BY _topic"
    ).rows
    assert [r[0] for r in dead] == [run.topic("deadletter") for run in runs]
    predicted = warehouse.query(
        f"SELECT _topic FROM headwater.predictions FINAL WHERE request_id = 'tx-{unique}' "
        "ORDER BY _topic"
    ).rows
    assert [r[0] for r in predicted] == [run.topic("predictions") for run in runs]
