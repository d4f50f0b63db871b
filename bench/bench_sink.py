"""The sink's rate into the embedded ClickHouse engine, against per-row inserts.

``python -m bench.bench_sink [--rows N] [--json]``

Records of ``events``, ``features`` and ``predictions`` are encoded once as the broker would
hold them; the timed part is what :class:`~headwater.streams.sink.ClickHouseSink` does with a
batch of them (as consumed messages): :class:`~headwater.streams.sink.Batcher` decodes the
records into the table's columns with the topic's :class:`~headwater.streams.sink.TableMap`
(read from the warehouse's own columns, as the sink does) — straight into Arrow columns where
the native codec covers the schema (``native_columns`` in the result says whether it did), and
``Warehouse.insert_columns`` inserts them — at the sink's batch size (``SinkConfig.max_rows``).
Two warehouses: the engine itself (:class:`ChdbWarehouse`) and the engine behind the warehouse
host over loopback HTTP (:class:`HostedWarehouse`, what the sink talks to under ``headwater
up``; Arrow columns go to it as one Arrow stream). The baseline is the same path with one
insert per row, measured in the same run on fewer rows. A third pass has one record in each
batch cut short (dead-lettered by the sink, the rest inserted), as a ratio to the clean rate.

Targets (issue 16): at least 100k rows/s, and at least 50× per-row inserts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from confluent_kafka import Message

from headwater.infra.migrations import apply_migrations
from headwater.infra.warehouse import ChdbWarehouse, HostedWarehouse, Warehouse
from headwater.infra.warehouse_host import _Handler
from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.codec import AvroCodec
from headwater.schemas.models import Event, EventModel, FeatureVector, Prediction
from headwater.streams.sink import Batcher, RecordDecoder, SinkConfig, TableMap, table_maps

TARGET_ROWS_PER_S = 100_000.0
TARGET_SPEEDUP = 50.0
TOPICS = ("events", "features", "predictions")
FEATURES = 12


def _record(topic: str, i: int) -> EventModel:
    values = {f"f{j}": float(i % 97 + j) / 7.0 for j in range(FEATURES)}
    if topic == "events":
        return Event(
            event_id=f"e{i}",
            entity_id=f"c{i % 5000}",
            event_type="purchase",
            event_time_ms=1_700_000_000_000 + i,
            numeric={"amount": i * 0.5, "items": float(i % 7)},
            categorical={"country": "FR", "channel": "web"},
            source_partition=i % 3,
            source_offset=i,
        )
    if topic == "features":
        return FeatureVector(
            entity_id=f"c{i % 5000}",
            feature_set="bench",
            feature_set_version=1,
            event_id=f"e{i}",
            event_time_ms=1_700_000_000_000 + i,
            computed_at_ms=1_700_000_000_005 + i,
            values=values,
        )
    return Prediction(
        request_id=f"r{i}",
        entity_id=f"c{i % 5000}",
        model="bench",
        version=1,
        route="champion",
        output=(i % 100) / 100.0,
        features=values,
        feature_set="bench",
        feature_set_version=1,
        event_time_ms=1_700_000_000_000 + i,
        served_at_ms=1_700_000_000_009 + i,
        latency_ms=1.5,
    )


def encoded(codec: AvroCodec, topic: str, count: int, first: int = 0) -> list[bytes]:
    """``count`` records of ``topic`` as the broker holds them."""
    return [
        codec.encode(record.SCHEMA, record.to_avro())
        for record in (_record(topic, first + i) for i in range(count))
    ]


def _messages(topic: str, values: Sequence[bytes], first: int) -> list[Message]:
    """The records as the sink's consumer hands them over, at offsets from ``first``."""
    return [
        Message(topic=topic, partition=0, offset=first + i, value=value)
        for i, value in enumerate(values)
    ]


def _refuse(message: Message, error: Exception) -> None:
    raise RuntimeError(f"the sink rejected a benchmark record: {error}")


def spoiled(values: Sequence[bytes], batch: int) -> list[bytes]:
    """``values`` with one record in each batch of ``batch`` cut short: one a batch that the
    sink must dead-letter while it inserts the rest.

    >>> spoiled([b"abcdef"] * 4, 2)
    [b'abcdef', b'abc', b'abcdef', b'abc']
    """
    out = list(values)
    for start in range(0, len(out), batch):
        index = min(start + batch // 2, len(out) - 1)
        out[index] = out[index][: len(out[index]) // 2]
    return out


@dataclass
class Rate:
    """Rows per second of one pass: the whole sink path (wall and process CPU time, chDB's
    threads included: on a shared machine the CPU rate is the one the neighbours leave alone),
    and ``Warehouse.insert_columns`` alone."""

    rows_per_s: float
    cpu_rows_per_s: float
    insert_rows_per_s: float
    insert_cpu_rows_per_s: float


def insert_rate(
    warehouse: Warehouse,
    codec: AvroCodec,
    mapping: TableMap,
    values: Sequence[bytes],
    batch: int,
    first: int,
    bad: int = 0,
) -> Rate:
    """Decode → columns → ``insert_columns`` in batches of ``batch`` rows (a new
    :class:`Batcher`, as a new sink starts with); ``bad`` of the values must be rejected (the
    rates count every record handled, rejected or inserted)."""
    messages = _messages(mapping.topic, values, first)
    rejected: list[Exception] = []
    reject = _refuse if not bad else (lambda _, error: rejected.append(error))
    began, cpu = time.perf_counter(), time.process_time()
    batcher = Batcher({mapping.topic: mapping}, {mapping.topic: mapping.topic}, codec, reject)
    inserted, inserting, inserting_cpu = 0, 0.0, 0.0
    for start in range(0, len(values), batch):
        columns, _ = batcher.batch(messages[start : start + batch])
        before, before_cpu = time.perf_counter(), time.process_time()
        inserted += warehouse.insert_columns(mapping.table, columns[mapping.table])
        inserting += time.perf_counter() - before
        inserting_cpu += time.process_time() - before_cpu
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    if inserted != len(values) - bad or len(rejected) != bad:
        raise RuntimeError(
            f"{mapping.table}: {inserted} rows inserted and {len(rejected)} rejected of "
            f"{len(values)} ({bad} bad)"
        )
    n = len(values)
    return Rate(n / elapsed, n / max(cpu, 1e-9), n / inserting, n / max(inserting_cpu, 1e-9))


@contextmanager
def hosted(engine: ChdbWarehouse, database: str = "") -> Iterator[HostedWarehouse]:
    """The warehouse host's HTTP handler over ``engine`` on a free loopback port, and a client
    of its ``database`` (default: the engine's)."""
    token = "bench-token"
    # inserts only: the caller-query readers are not needed
    handler = type("Handler", (_Handler,), {"warehouse": engine, "readers": None, "token": token})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    client = HostedWarehouse(url, database or engine.database, token=token)
    try:
        yield client
    finally:
        client.close()
        server.shutdown()
        server.server_close()
        thread.join()


def _measure(
    warehouse: Warehouse,
    codec: AvroCodec,
    maps: dict[str, TableMap],
    records: dict[str, list[bytes]],
    batch: int,
    per_row_rows: int,
    first: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    batched: list[Rate] = []
    single: list[Rate] = []
    with_bad: list[Rate] = []
    for topic in TOPICS:
        values, mapping = records[topic], maps[topic]
        batched.append(insert_rate(warehouse, codec, mapping, values, batch, first))
        one = values[:per_row_rows]
        single.append(insert_rate(warehouse, codec, mapping, one, 1, first + 10**8))
        worse, bad = spoiled(values, batch), -(-len(values) // batch)  # one a batch
        with_bad.append(
            insert_rate(warehouse, codec, mapping, worse, batch, first + 2 * 10**8, bad)
        )
        out[topic] = {
            "batched": asdict(batched[-1]),
            "per_row": asdict(single[-1]),
            "one_bad_per_batch": asdict(with_bad[-1]),
        }
    rows = len(records[TOPICS[0]])

    def overall(rates: list[Rate], n: int, field: str) -> float:
        return len(rates) * n / sum(n / float(getattr(r, field)) for r in rates)

    for field in ("rows_per_s", "cpu_rows_per_s", "insert_rows_per_s", "insert_cpu_rows_per_s"):
        out[field] = overall(batched, rows, field)
        out[f"per_row_{field}"] = overall(single, per_row_rows, field)
    out["speedup"] = out["rows_per_s"] / out["per_row_rows_per_s"]
    out["one_bad_per_batch_rows_per_s"] = overall(with_bad, rows, "rows_per_s")
    out["one_bad_per_batch_ratio"] = out["one_bad_per_batch_rows_per_s"] / out["rows_per_s"]
    return out


def run(
    rows: int = 20_000,
    per_row_rows: int = 100,
    batch: int = 0,
    engine: ChdbWarehouse | None = None,
) -> dict[str, Any]:
    """Rows/s per topic and over all three, batched (``batch`` rows; 0: the sink's
    ``max_rows``) and per row, into the engine and through the warehouse host. ``engine``: a
    migrated engine to use (chDB lets a process open one); by default a new one in a
    temporary directory."""
    batch = batch or SinkConfig().max_rows
    codec = AvroCodec(SchemaCatalog.default())
    records = {topic: encoded(codec, topic, rows) for topic in TOPICS}
    with tempfile.TemporaryDirectory(prefix="hw-bench-sink-") as home:
        own = engine is None
        engine = engine or ChdbWarehouse(Path(home) / "warehouse")
        try:
            apply_migrations(engine)
            maps = table_maps(engine)
            # Offsets apart from any earlier run's: every row is new to its table.
            first = time.time_ns() // 1000
            direct = _measure(engine, codec, maps, records, batch, per_row_rows, first)
            with hosted(engine) as client:
                host = _measure(client, codec, maps, records, batch, per_row_rows, first + 10**9)
        finally:
            if own:
                engine.close()
    native = all(RecordDecoder(codec).decode_columns(v[:1]) is not None for v in records.values())
    return {
        "rows": rows,
        "batch": batch,
        "native_columns": native,
        "per_row_rows": per_row_rows,
        "chdb": direct,
        "host": host,
        "target_rows_per_s": TARGET_ROWS_PER_S,
        "target_speedup": TARGET_SPEEDUP,
        "ratios": {
            "sink_rows_per_s_to_target_ratio": direct["rows_per_s"] / TARGET_ROWS_PER_S,
            "sink_cpu_rows_per_s_to_target_ratio": direct["cpu_rows_per_s"] / TARGET_ROWS_PER_S,
            "sink_insert_rows_per_s_to_target_ratio": (
                direct["insert_rows_per_s"] / TARGET_ROWS_PER_S
            ),
            "sink_insert_cpu_rows_per_s_to_target_ratio": (
                direct["insert_cpu_rows_per_s"] / TARGET_ROWS_PER_S
            ),
            "sink_to_per_row_speedup": direct["speedup"],
            "sink_one_bad_per_batch_to_clean_ratio": direct["one_bad_per_batch_ratio"],
            "sink_speedup_to_target_ratio": direct["speedup"] / TARGET_SPEEDUP,
            "host_rows_per_s_to_target_ratio": host["rows_per_s"] / TARGET_ROWS_PER_S,
            "host_cpu_rows_per_s_to_target_ratio": host["cpu_rows_per_s"] / TARGET_ROWS_PER_S,
            "host_to_per_row_speedup": host["speedup"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_sink")
    parser.add_argument("--rows", type=int, default=20_000, help="records per topic")
    parser.add_argument("--per-row-rows", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(rows=args.rows, per_row_rows=args.per_row_rows)
    if args.json:
        print(json.dumps(result))
        return
    print(f"decoded straight into Arrow columns: {result['native_columns']}")
    for name in ("chdb", "host"):
        part = result[name]
        print(
            f"{name}: {part['rows_per_s']:,.0f} rows/s in batches of {result['batch']} "
            f"({part['cpu_rows_per_s']:,.0f} per CPU second; the insert alone "
            f"{part['insert_rows_per_s']:,.0f}) vs {part['per_row_rows_per_s']:,.0f} per row "
            f"({part['speedup']:.0f}×; targets {TARGET_ROWS_PER_S:,.0f} rows/s, "
            f"{TARGET_SPEEDUP:.0f}×); with one bad record a batch "
            f"{part['one_bad_per_batch_rows_per_s']:,.0f} rows/s "
            f"({part['one_bad_per_batch_ratio']:.2f}× clean)"
        )
        for topic in TOPICS:
            print(f"  {topic}: {part[topic]['batched']}")


if __name__ == "__main__":
    main()
