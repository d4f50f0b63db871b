"""The online feature worker on the real broker: ingest, dead letters, features, parity."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from headwater.core.settings import HeadwaterSettings
from headwater.infra.consumer_lag import sample_lag
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import make_producer
from headwater.infra.metrics import metrics_dir
from headwater.streams.feature_module import load_feature_module
from headwater.streams.lookup import ChangelogReplica
from headwater.streams.offline import offline_features
from headwater.streams.worker import app_id
from tests.streams.poison import TRANSACTION, poison_records, transaction
from tests.streams.workers import decoded, end_offsets, start_worker, stop_worker, wait_until

pytestmark = pytest.mark.integration

MINUTE = 60_000


def _produce_mixed(bus: EventBus) -> tuple[int, list[tuple[bytes, str]]]:
    """Valid events (Avro and JSON, three cards, one late within grace, one beyond) and poison."""
    base = 1_700_000_000_000
    sent = 0
    for i in range(60):
        card = f"card-{i % 3}"
        record = transaction(i, card=card, t=base + i * 20_000, channel=("pos", "online")[i % 2])
        if i % 2:
            bus.send_raw(record)
        else:
            bus.send_bytes("events.raw", orjson.dumps(record), card.encode())
        sent += 1
    within = transaction(100, card="card-0", t=base + 59 * 20_000 - 4 * MINUTE)
    beyond = transaction(101, card="card-0", t=base + 59 * 20_000 - 30 * MINUTE)
    for record in (within, beyond):
        bus.send_raw(record)
    poison = [*poison_records(bus.codec), (bus.codec.encode(TRANSACTION, beyond), "LATE_EVENT")]
    for value, _ in poison[:-1]:
        bus.send_bytes("events.raw", value, b"card-0")
    bus.flush()
    return sent + 1, poison


def _scrape_worker(settings: HeadwaterSettings) -> dict[tuple[str, str], float]:
    """The feature worker's counters by (name, topic), from the /metrics it recorded."""
    records = [json.loads(p.read_text()) for p in metrics_dir(settings).glob("*.json")]
    urls = [r["url"] for r in records if r["role"] == "feature_worker"]
    assert urls, f"the feature worker recorded no /metrics endpoint: {records}"
    text = httpx.get(urls[-1], timeout=10).text
    return {
        (sample.name, sample.labels.get("topic", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("stage") == "features"
    }


def _committed(settings: HeadwaterSettings) -> int:
    """How many records of ``events.raw`` the feature worker's group has committed."""
    raw = settings.topic("events.raw")
    samples = sample_lag(settings, [app_id(settings)])
    return sum(s.committed_offset for s in samples if s.topic == raw and s.committed_offset > 0)


def test_worker_validates_featurizes_and_agrees_with_offline(
    isolated: HeadwaterSettings, tmp_path: Path, unique: str
) -> None:
    bus = EventBus(isolated)
    valid, poison = _produce_mixed(bus)
    consumed = valid + len(poison)
    log = tmp_path / "worker.log"
    worker = start_worker(isolated, "headwater.streams.worker", log)
    try:
        wait_until(
            lambda: (
                end_offsets(isolated, "events") + end_offsets(isolated, "deadletter") >= consumed
                and end_offsets(isolated, "features") >= valid
            ),
            90,
            "the worker to process every record",
            log,
        )
        # Its /metrics counts what it consumed and rejected, as the counts below add up.
        # (A batch is counted just after its outputs are acknowledged: poll briefly.)
        wanted = {
            ("headwater_records_total", "events.raw"): consumed,
            ("headwater_records_total", "deadletter"): len(poison),
        }
        wait_until(
            lambda: {k: _scrape_worker(isolated).get(k) for k in wanted} == wanted,
            30,
            f"the worker's /metrics to count {wanted}",
            log,
        )
        # Commits are batched in time (COMMIT_EVERY_S), and an idle worker still commits what
        # it finished: nothing is left to be read again, and its lag shows 0.
        wait_until(
            lambda: _committed(isolated) == consumed, 30, "the worker to commit every record", log
        )
    finally:
        stop_worker(worker)

    # Counts add up: consumed = valid + dead-lettered.
    assert end_offsets(isolated, "events.raw") == consumed
    assert end_offsets(isolated, "events") == valid
    letters = decoded(isolated, "deadletter", f"dl-{unique}")
    assert Counter(d["reason_code"] for d in letters) == Counter(code for _, code in poison)
    assert sorted(d["original_value"] for d in letters) == sorted(v for v, _ in poison)
    assert all(d["source_topic"] == isolated.topic("events.raw") for d in letters)
    assert len({(d["source_partition"], d["source_offset"]) for d in letters}) == len(letters)

    # One definition, online and offline: the same values for every event.
    events = decoded(isolated, "events", f"ev-{unique}")
    online = {f["event_id"]: f for f in decoded(isolated, "features", f"ft-{unique}")}
    fs = load_feature_module(isolated.features).feature_set
    offline = {f["event_id"]: f for f in offline_features(fs, events)}
    assert len(online) == len(offline) == valid
    for event_id, row in offline.items():
        assert online[event_id]["values"] == row["values"], event_id
        assert online[event_id]["event_time_ms"] == row["event_time_ms"]
    late_ok = online["tx-100"]["values"]
    assert late_ok["txn_count_10m"] >= 2.0  # the late event was applied within its window

    # Online lookup from the table's changelog: the entity's vector at its newest event.
    replica = ChangelogReplica(isolated, fs)
    try:
        assert replica.refresh() >= 3
        newest = max(
            (r for r in offline.values() if r["entity_id"] == "card-1"),
            key=lambda r: r["event_time_ms"],
        )
        found = replica.lookup("card-1", now_ms=newest["event_time_ms"] + 5_000)
        assert found is not None
        assert found.values == newest["values"]
        assert (found.event_time_ms, found.freshness_ms) == (newest["event_time_ms"], 5_000)
        assert replica.lookup("card-never-seen") is None
        # A replica that keeps following sees what is written after its last refresh: its
        # refreshes read to the ends its own fetches saw (asking the broker waited behind
        # those fetches, 1.2 s a refresh), and those fetches return as soon as a record lands.
        state = replica.state("card-1")
        assert state is not None
        producer = make_producer(isolated)
        producer.produce(replica.topic, state.to_bytes(), b"card-written-later", partition=0)
        assert producer.flush(10) == 0
        wait_until(
            lambda: replica.refresh() >= 0 and replica.lookup("card-written-later") is not None,
            30,
            "the replica to see a state written after its last refresh",
        )
        assert replica.refresh() == 0  # nothing new since
    finally:
        replica.close()
