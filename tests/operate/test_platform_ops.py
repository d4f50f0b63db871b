"""``headwater up`` serves the dashboard and ``/metrics`` from the warehouse host, samples lag,
and ``headwater status`` shows lag, routing, alarms and loop decisions; ``down`` stops it all."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from confluent_kafka import TopicPartition

from headwater.core.settings import HeadwaterSettings
from headwater.infra.kafka_clients import ensure_topics, make_consumer, make_producer
from headwater.infra.local_processes import pid_alive
from tests.conftest import TEST_PORTS, settings_env

pytestmark = pytest.mark.integration


def headwater(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater.cli.main", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def ops_env(kafka: HeadwaterSettings, unique: str) -> Iterator[dict[str, str]]:
    env = settings_env(kafka)
    env.update(
        HEADWATER_TOPIC_PREFIX=f"ops-{unique}-",
        HEADWATER_DASHBOARD_PORT=str(TEST_PORTS["kafka"] - 3),
        HEADWATER_METRICS_PORT=str(TEST_PORTS["kafka"] - 20),
        HEADWATER_DASHBOARD_REFRESH_S="0.5",
        # The session's broker as an external cluster: `down` must leave it running.
        HEADWATER_KAFKA_BOOTSTRAP=kafka.bootstrap_servers,
    )
    yield env
    headwater("down", "--json", env=env)


def _lagging_group(settings: HeadwaterSettings, group: str) -> None:
    """Five records on `events`, two of them committed by ``group``: a lag of three."""
    ensure_topics(settings)
    producer = make_producer(settings)
    for _ in range(5):
        producer.produce(settings.topic("events"), value=b"x", partition=1)
    producer.flush(10)
    consumer = make_consumer(settings, group)
    try:
        consumer.commit(
            offsets=[TopicPartition(settings.topic("events"), 1, 2)], asynchronous=False
        )
    finally:
        consumer.close()


def _wait_for(url: str, needle: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        try:
            text = httpx.get(url, timeout=10).text
        except httpx.TransportError as error:  # not listening yet
            text = repr(error)
        if needle in text:
            return text
        time.sleep(0.5)
    raise AssertionError(f"{needle!r} never appeared at {url}; last answer: {text[:500]}")


def _foreground_dashboard(env: dict[str, str]) -> None:
    """`headwater dashboard` (compose's dashboard service) serves through the running host and
    exits 0 on SIGTERM."""
    port = int(env["HEADWATER_DASHBOARD_PORT"]) + 1
    process = subprocess.Popen(
        [sys.executable, "-m", "headwater.cli.main", "dashboard", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "Records per second" in _wait_for(f"http://127.0.0.1:{port}/", "<canvas")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr


def test_up_serves_dashboard_metrics_and_status_operations(
    ops_env: dict[str, str], kafka: HeadwaterSettings, unique: str
) -> None:
    up = headwater("up", "--json", env=ops_env)
    assert up.returncode == 0, up.stderr
    dashboard = json.loads(up.stdout)["operations"]["dashboard"]
    assert dashboard == f"http://127.0.0.1:{ops_env['HEADWATER_DASHBOARD_PORT']}/"
    group = f"ops-group-{unique}"
    _lagging_group(
        kafka.model_copy(update={"topic_prefix": ops_env["HEADWATER_TOPIC_PREFIX"]}), group
    )

    panels = _wait_for(f"{dashboard}api/panels", group)
    lag = next(p for p in json.loads(panels) if p["key"] == "lag")
    assert any(s["label"].startswith(group) and s["points"][-1][1] == 3 for s in lag["series"])
    # The metrics port is the first free one from HEADWATER_METRICS_PORT: read where it went.
    record = next((kafka.home / "metrics").glob("dashboard-*.json"))
    metrics_url = json.loads(record.read_text())["url"]
    metrics = _wait_for(metrics_url, group)
    assert f'headwater_consumer_lag{{group="{group}"' in metrics

    # The processes `up` started (under its supervisor) serve /metrics once they are going.
    deadline = time.monotonic() + 120
    while True:
        status = headwater("status", "--json", env=ops_env)
        operations = json.loads(status.stdout)["operations"]
        roles = {e.rpartition(" (")[2].rstrip(")") for e in operations["metrics"]}
        if {"dashboard", "sink", "supervisor"} <= roles or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {"dashboard", "sink", "supervisor"} <= roles
    events = ops_env["HEADWATER_TOPIC_PREFIX"] + "events"
    assert {"group_id": group, "topic": events, "lag": 3} in operations["lag"]
    assert {p["name"] for p in operations["processes"]} >= {"sink", "scorer", "trial_worker"}
    assert f"{metrics_url} (dashboard)" in operations["metrics"]
    text = headwater("status", env=ops_env).stdout
    sections = ("processes", "consumer lag", "routing", "open alarms", "last loop decisions")
    for section in (*sections, group):
        assert section in text

    _foreground_dashboard(ops_env)
    host = json.loads(up.stdout)["processes"]["warehouse_host"]
    down = headwater("down", "--json", env=ops_env)
    assert json.loads(down.stdout)["stopped"]["warehouse_host"] is True
    assert not pid_alive(host)
    with pytest.raises(httpx.ConnectError):
        httpx.get(dashboard, timeout=2)
