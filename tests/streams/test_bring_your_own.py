"""Bring your own events: an unrelated domain (.avsc + feature module), no platform changes,
through the worker to `features` and through the sink to warehouse rows."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import ensure_topics
from headwater.infra.warehouse import ChdbWarehouse
from headwater.streams.feature_module import load_feature_module
from headwater.streams.offline import warehouse_features
from headwater.streams.sink import ClickHouseSink, SinkConfig
from tests.streams.workers import end_offsets, start_worker, stop_worker, wait_until

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent / "byo"
FEATURES = "tests.streams.byo.ride_features"


def test_own_domain_to_features_and_warehouse(
    kafka: HeadwaterSettings, warehouse: ChdbWarehouse, unique: str, tmp_path: Path
) -> None:
    settings = kafka.model_copy(
        update={
            "topic_prefix": f"byo-{unique}-",
            "event_schema_file": str(HERE / "rides.avsc"),
            "features": FEATURES,
        }
    )
    ensure_topics(settings)
    bus = EventBus(settings)
    rides = 40
    for i in range(rides):
        ride = {
            "ride_id": f"{unique}-{i}",
            "rider_id": f"rider-{i % 4}",
            "ended_at_ms": 1_700_000_000_000 + i * 600_000,
            "fare_eur": 7.5 + i,
            "minutes": 10 + i % 30,
            "city": ("Paris", "Lyon")[i % 3 == 0],
        }
        if i % 2:
            bus.send_raw(ride)
        else:
            bus.send_bytes("events.raw", orjson.dumps(ride), f"rider-{i % 4}".encode())
    bus.send_bytes("events.raw", orjson.dumps({"ride_id": "x", "rider_id": "r"}), b"r")
    bus.flush()

    log = tmp_path / "worker.log"
    worker = start_worker(settings, "headwater.streams.worker", log)
    try:
        wait_until(lambda: end_offsets(settings, "features") >= rides, 90, "ride features", log)
        wait_until(lambda: end_offsets(settings, "deadletter") >= 1, 30, "the bad ride", log)
    finally:
        stop_worker(worker)

    sink = ClickHouseSink(settings, warehouse, SinkConfig(max_rows=500, max_wait_s=0.3))
    expected = (rides + 1) + rides + rides + 1  # raw, events, features, dead letter
    sink.run(lambda: sink.stats.inserted >= expected)
    db = warehouse.database
    rows = warehouse.query(
        f"SELECT event_id, values FROM {db}.features FINAL "
        "WHERE feature_set = 'rider_activity' AND feature_set_version = 2"
    ).dicts()
    assert len(rows) == rides
    letter = warehouse.query(
        f"SELECT reason_code FROM {db}.deadletter FINAL "
        f"WHERE source_topic = '{settings.topic('events.raw')}'"
    ).scalar()
    assert letter == "MISSING_FIELD"

    # The offline path over the warehouse's events gives the very values the worker produced.
    fs = load_feature_module(FEATURES).feature_set
    offline = {r["event_id"]: r["values"] for r in warehouse_features(warehouse, fs)}
    assert {r["event_id"]: r["values"] for r in rows} == offline
