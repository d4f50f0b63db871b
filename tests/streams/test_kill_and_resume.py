"""Kill the feature worker mid-stream (SIGKILL), restart it, and get the uninterrupted results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.demo.generator import DemoConfig, TransactionGenerator
from headwater.infra.event_bus import EventBus, make_codec, read_topic
from headwater.schemas.domain import load_domain
from headwater.schemas.models import Transaction
from headwater.streams.feature_module import load_feature_module
from headwater.streams.pipeline import DictStateStore, FeaturePipeline, RawRecord
from tests.streams.workers import decoded, end_offsets, start_worker, stop_worker, wait_until

pytestmark = pytest.mark.integration


def _produce(settings: HeadwaterSettings, transactions: list[Transaction]) -> None:
    bus = EventBus(settings)
    for tx in transactions:
        bus.send_raw(tx.to_avro())
    bus.flush()


def _uninterrupted(settings: HeadwaterSettings, unique: str) -> dict[str, dict[str, float]]:
    """The same raw records through the same pipeline in one go, in memory."""
    codec = make_codec(settings)
    module = load_feature_module(settings.features)
    pipeline = FeaturePipeline(load_domain(codec.catalog), codec, module, settings.topic_prefix)
    raw = sorted(
        read_topic(settings, "events.raw", group=f"ref-{unique}", idle_timeout_s=3.0),
        key=lambda r: (r.partition, r.offset),
    )
    batch = [RawRecord(r.partition, r.offset, r.key, r.value) for r in raw]
    out = pipeline.process(batch, DictStateStore(), now_ms=0)
    values: dict[str, dict[str, float]] = {}
    for record in out.records:
        if record.topic == "features":
            _, vector = codec.decode(record.value)
            values[vector["event_id"]] = vector["values"]
    return values


def _features(settings: HeadwaterSettings, unique: str, attempt: int) -> list[dict[str, Any]]:
    return decoded(settings, "features", f"check-{unique}-{attempt}")


def test_killed_worker_resumes_from_its_changelog(
    isolated: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    config = DemoConfig(seed=9, cards=40, fraud_rate=0.05)
    generator = iter(TransactionGenerator(config))
    transactions = [next(generator).transaction for _ in range(1500)]
    log = tmp_path / "worker.log"

    workers = []
    try:
        _produce(isolated, transactions[:600])
        workers.append(start_worker(isolated, "headwater.streams.worker", log))
        wait_until(lambda: end_offsets(isolated, "features") >= 600, 90, "first 600", log)
        stop_worker(workers[-1], kill=True)  # offsets of the last batches likely uncommitted

        _produce(isolated, transactions[600:])
        workers.append(start_worker(isolated, "headwater.streams.worker", log))
        wait_until(lambda: end_offsets(isolated, "features") >= 700, 90, "the restart", log)
        stop_worker(workers[-1], kill=True)  # somewhere in the middle of the remaining 900

        workers.append(start_worker(isolated, "headwater.streams.worker", log))
        wait_until(lambda: end_offsets(isolated, "features") >= 1500, 120, "the rest", log)
        attempts = iter(range(100))
        wait_until(
            lambda: (
                len({v["event_id"] for v in _features(isolated, unique, next(attempts))}) == 1500
            ),
            90,
            "a vector for every event",
            log,
        )
    finally:
        for worker in workers:
            stop_worker(worker)

    vectors: dict[str, list[dict[str, Any]]] = {}
    for vector in _features(isolated, unique, 999):
        vectors.setdefault(vector["event_id"], []).append(vector["values"])
    assert len(vectors) == 1500
    # A batch re-run after a crash may repeat a vector, never change it.
    assert all(all(v == versions[0] for v in versions) for versions in vectors.values())
    reference = _uninterrupted(isolated, unique)
    assert {k: v[0] for k, v in vectors.items()} == reference
    assert end_offsets(isolated, "events") >= 1500


def test_engines_share_the_changelog(
    isolated: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    """The Faust engine processes the first half; the librdkafka engine recovers its state from
    the changelog and processes the rest: the same values as one uninterrupted run."""
    generator = iter(TransactionGenerator(DemoConfig(seed=4, cards=30, fraud_rate=0.05)))
    transactions = [next(generator).transaction for _ in range(800)]
    log = tmp_path / "worker.log"

    _produce(isolated, transactions[:400])
    faust = start_worker(isolated, "headwater.streams.worker", log, HEADWATER_STREAM_ENGINE="faust")
    try:
        wait_until(lambda: end_offsets(isolated, "features") >= 400, 120, "the Faust engine", log)
    finally:
        stop_worker(faust)
    assert "feature worker (librdkafka)" not in log.read_text(errors="replace")

    _produce(isolated, transactions[400:])
    rdkafka = start_worker(
        isolated, "headwater.streams.worker", log, HEADWATER_STREAM_ENGINE="librdkafka"
    )
    try:
        wait_until(lambda: end_offsets(isolated, "features") >= 800, 90, "the librdkafka one", log)
    finally:
        stop_worker(rdkafka)
    assert "feature worker (librdkafka)" in log.read_text(errors="replace")

    vectors = {v["event_id"]: v["values"] for v in _features(isolated, unique, 0)}
    assert len(vectors) == 800
    assert vectors == _uninterrupted(isolated, unique)


def test_second_worker_takes_over_partitions_with_their_state(
    isolated: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    """Scaling out: a second worker joins the group, the partitions it takes over are revoked
    from the first (offsets committed, states dropped) and recovered from the changelog by the
    second; every event still gets the values of one uninterrupted run."""
    generator = iter(TransactionGenerator(DemoConfig(seed=6, cards=30, fraud_rate=0.05)))
    transactions = [next(generator).transaction for _ in range(1000)]
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"

    _produce(isolated, transactions[:500])
    first = start_worker(isolated, "headwater.streams.worker", first_log)
    second = None
    try:
        wait_until(lambda: end_offsets(isolated, "features") >= 500, 90, "the first", first_log)
        second = start_worker(isolated, "headwater.streams.worker", second_log)
        wait_until(
            lambda: (
                "state record(s) recovered" in second_log.read_text(errors="replace")
                and "revoked" in first_log.read_text(errors="replace")
            ),
            60,
            "the second worker to take partitions over",
            second_log,
        )
        _produce(isolated, transactions[500:])
        wait_until(lambda: end_offsets(isolated, "features") >= 1000, 90, "the rest", second_log)
    finally:
        stop_worker(first)
        if second is not None:
            stop_worker(second)

    vectors: dict[str, list[dict[str, float]]] = {}
    for vector in _features(isolated, unique, 0):
        vectors.setdefault(vector["event_id"], []).append(vector["values"])
    assert len(vectors) == 1000
    assert all(all(v == versions[0] for v in versions) for versions in vectors.values())
    assert {k: v[0] for k, v in vectors.items()} == _uninterrupted(isolated, unique)
