"""``/metrics`` of the platform's long-running processes, started for real (``python -m``) on the
test broker with a warehouse host of their own, scraped over HTTP as Prometheus would: each
records what it does — the sink its batches, the loop's agents their inputs and outputs (and the
scorers' latencies from the predictions they read), the retrain and trial workers the requests
and trials they could not read."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import ensure_topics
from headwater.infra.metrics import metrics_dir
from headwater.infra.warehouse import HostedWarehouse
from headwater.infra.warehouse_host import running_host, running_host_url
from headwater.schemas.models import Label, Prediction
from tests.operate.child_processes import Workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = int(os.environ.get("HEADWATER_TEST_PORT_BASE", "29000"))
PROCESSES = {
    "sink": "headwater.streams.sink",
    "loop": "headwater.loop",
    "retrain-worker": "headwater.trainers.retrain",
    "trial-worker": "headwater.trainers.trial_worker",
}
PREDICTION = Prediction(
    request_id="pm-r1", entity_id="m-1", model="pm", version=2, route="canary", output=0.7,
    features={}, event_time_ms=1_000, served_at_ms=1_040, latency_ms=2.0,
)  # fmt: skip
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _wait(check: Callable[[], bool], timeout_s: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            tails = {p.name: p.read_text(errors="replace")[-1500:] for p in logs.glob("*.log")}
            raise AssertionError(f"timed out waiting for {what}; logs: {tails}")
        time.sleep(0.5)


def _endpoints(settings: HeadwaterSettings) -> dict[str, str]:
    records = [json.loads(p.read_text()) for p in metrics_dir(settings).glob("*.json")]
    return {r["role"]: r["url"] for r in records}


def _scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
def platform(
    kafka: HeadwaterSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[HeadwaterSettings, Path]]:
    """A state directory and topic prefix of their own, with a running warehouse host."""
    root = tmp_path_factory.mktemp("process-metrics")
    settings = kafka.model_copy(
        update={
            "home": root / "home",
            "topic_prefix": f"pm-{root.name}-",
            "warehouse_host_port": BASE + 71,
            "metrics_port": BASE + 140,
        }
    )
    ensure_topics(settings)
    host = Workers(root / "logs")
    host.start("warehouse-host", "headwater.infra.warehouse_host", settings)
    try:
        _wait(lambda: running_host_url(settings) is not None, 120, "the warehouse host", host.logs)
        yield settings, host.logs
    finally:
        host.stop()


def test_every_long_running_process_serves_what_it_does(
    platform: tuple[HeadwaterSettings, Path],
) -> None:
    settings, logs = platform
    workers = Workers(logs)
    for role, module in PROCESSES.items():
        workers.start(role, module, settings)
    processes = dict(workers.processes)
    try:
        _wait(lambda: set(_endpoints(settings)) >= set(PROCESSES), 180, "/metrics", logs)
        bus = EventBus(settings)
        bus.send("labels", Label(entity_id="m-1", label=1.0, event_time_ms=1, labeled_at_ms=2))
        bus.send("predictions", PREDICTION)
        for topic in ("labels", "retrain-requests", "trials"):
            bus.send_bytes(topic, b"\xc3\x01not avro at all", b"k")
        bus.flush()
        urls = _endpoints(settings)
        expected = {
            "sink": [
                ("headwater_records_total", {"topic": "labels", "stage": "sink"}),
                ("headwater_batch_duration_seconds_count", {"stage": "sink"}),
                ("headwater_deadletter_records_total", {"reason_code": "BAD_ENCODING"}),
            ],
            "loop": [
                ("headwater_records_total", {"topic": "labels", "stage": "headwater-loop"}),
                ("headwater_batch_records_count", {"stage": "headwater-loop"}),
                ("headwater_scoring_latency_seconds_count", {"model": "pm", "route": "canary"}),
                (
                    "headwater_deadletter_records_total",
                    {"source_topic": "labels", "reason_code": "undecodable"},
                ),
            ],
            "retrain-worker": [
                ("headwater_failures_total", {"stage": "retrain-worker", "reason": "undecodable"})
            ],
            "trial-worker": [
                ("headwater_failures_total", {"stage": "trial-worker", "reason": "undecodable"})
            ],
        }

        def recorded() -> bool:
            for role, wanted in expected.items():
                samples = _scrape(urls[role])
                for name, labels in wanted:
                    found = [
                        v
                        for (n, ls), v in samples.items()
                        if n == name and set(labels.items()) <= ls
                    ]
                    if not found or max(found) < 1:
                        return False
            return True

        _wait(recorded, 180, f"every process's metrics at {urls}", logs)
    finally:
        workers.stop()  # SIGTERM: each stops as it would under a supervisor
    codes = {role: p.returncode for role, p in processes.items()}
    assert codes == dict.fromkeys(PROCESSES, 0), codes
    assert _endpoints(settings) == {}  # each took its record along when it stopped


def test_the_host_inserts_into_the_database_its_client_names(
    platform: tuple[HeadwaterSettings, Path],
) -> None:
    settings, _ = platform
    host = running_host(settings)
    assert host is not None
    other = HostedWarehouse(host.url, "headwater_other", token=host.token)
    try:
        other.command("CREATE DATABASE IF NOT EXISTS headwater_other")
        other.command(
            "CREATE TABLE IF NOT EXISTS headwater_other.notes (n Int32) ENGINE = MergeTree "
            "ORDER BY n"
        )
        assert other.insert("notes", ["n"], [[1], [2]]) == 2
        assert other.query("SELECT sum(n) FROM headwater_other.notes").scalar() == 3
    finally:
        other.close()
