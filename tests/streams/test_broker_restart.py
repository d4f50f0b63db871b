"""The platform survives a broker restart: a platform of its own (its own local Apache Kafka on
its own ports and state directory, not the session's), the broker stopped and started again
mid-stream; afterwards every process runs, and every event has exactly one event row and one
prediction row in the warehouse: none lost, none duplicated."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import orjson
import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.infra.local_kafka import LocalKafka
from headwater.infra.supervision import process_log
from headwater.infra.warehouse import HostedWarehouse
from headwater.infra.warehouse_host import host_file, running_host, running_host_pid
from headwater.operate.platform import stop_pid
from headwater.operate.processes import stop_stream_processes, supervised
from headwater.serving.routing import publish_routing, routing_event
from tests.serving.modelkit import register_versions
from tests.streams.poison import transaction
from tests.streams.test_platform_streams import MODEL_FEATURES, _headwater
from tests.streams.workers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 400


def _free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that nothing listens on now (the kernel's choice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def _send(settings: HeadwaterSettings, events: list[dict[str, object]]) -> None:
    bus = EventBus(settings)
    for record in events:
        bus.send_bytes("events.raw", orjson.dumps(record), str(record["card_id"]).encode())
    bus.flush(timeout_s=120)


def test_every_process_survives_a_broker_restart(
    kafka: HeadwaterSettings, tmp_path: Path, unique: str
) -> None:
    # Ports the machine has free now: fixed offsets met a port still held by an earlier test.
    ports = _free_ports(6)
    settings = HeadwaterSettings(
        home=tmp_path / "home",
        kafka_local_port=ports[0],
        kafka_local_controller_port=ports[1],
        kafka_local_heap_mb=384,
        warehouse_host_port=ports[2],
        http_port=ports[3],
        dashboard_port=ports[4],
        metrics_port=ports[5],
        topic_prefix=f"br-{unique}-",
        supervisor_backoff_s=0.5,
    )
    # The session broker's resolved jars: no second Maven resolution.
    (settings.home / "kafka").mkdir(parents=True)
    shutil.copy(kafka.home / "kafka" / "classpath.txt", settings.home / "kafka")
    broker = LocalKafka(settings)
    started = _headwater(settings, "up", "--json")
    assert started.returncode == 0, started.stderr
    warehouse: HostedWarehouse | None = None
    try:
        register_versions(settings, settings.serving_model, unique, 1, features=MODEL_FEATURES)
        publish_routing(EventBus(settings), routing_event(settings.serving_model, {1: 1.0}))
        address = running_host(settings)
        assert address is not None
        warehouse = HostedWarehouse(address.url, token=address.token)
        db = warehouse.database
        mine = f"entity_id LIKE '{unique}-%'"
        scored = f"SELECT uniqExact(request_id) FROM {db}.predictions FINAL WHERE {mine}"
        events = [transaction(i, card=f"{unique}-{i % 7}") for i in range(EVENTS)]
        _send(settings, events[: EVENTS // 2])
        wait_until(
            lambda: int(warehouse.query(scored).scalar()) > 0,
            180,
            "the first predictions",
            process_log(settings, "scorer"),
        )
        # Mid-stream: the broker goes away for a while and comes back on the same ports.
        assert broker.stop()
        time.sleep(10)
        broker.start()
        _send(settings, events[EVENTS // 2 :])
        wait_until(
            lambda: int(warehouse.query(scored).scalar()) == EVENTS,
            300,
            f"a prediction for each of the {EVENTS} events",
            process_log(settings, "scorer"),
        )
        for table in ("events", "predictions", "features"):
            # The sink lands each topic at its own pace: a table may trail the predictions.
            count = f"SELECT count() FROM {db}.{table} FINAL WHERE {mine}"

            def rows(count: str = count) -> int:
                assert warehouse is not None
                return int(warehouse.query(count).scalar())

            wait_until(
                lambda: rows() >= EVENTS,
                120,
                f"a {table} row for each of the {EVENTS} events",
                process_log(settings, "sink"),
            )
            assert rows() == EVENTS, table  # none duplicated
        # Every process runs: the consumer loops retried through the outage; a process that
        # exited on it (the retrain worker, at its broker check) was restarted, none given up.
        records = supervised(settings)
        print({r.name: (r.state, r.restarts, r.last_exit) for r in records})
        assert records and all(r.state == "running" for r in records), records
    finally:
        if warehouse is not None:
            warehouse.close()
        stop_stream_processes(settings)
        host = running_host_pid(settings)
        if host is not None:
            stop_pid(host)
            host_file(settings).unlink(missing_ok=True)
        broker.stop()
