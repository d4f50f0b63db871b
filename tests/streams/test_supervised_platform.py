"""`headwater up` supervises its processes: the feature worker and the Kafka scorer, killed with
SIGKILL mid-stream, come back on their own, and every event still gets exactly one prediction."""

from __future__ import annotations

import os
import signal
from collections import Counter

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus, make_codec, read_topic
from headwater.infra.local_processes import pid_alive
from headwater.infra.metrics import metrics_dir
from headwater.infra.supervision import process_log
from headwater.infra.warehouse import HostedWarehouse
from headwater.infra.warehouse_host import host_file, running_host, running_host_pid
from headwater.operate.platform import stop_pid
from headwater.operate.processes import stop_stream_processes, stream_process_pids, supervised
from headwater.serving.routing import publish_routing, routing_event
from tests.serving.modelkit import register_versions
from tests.streams.poison import transaction
from tests.streams.test_platform_streams import MODEL_FEATURES, _headwater
from tests.streams.workers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 600
KILLED = ("feature_worker", "scorer")


def _restarts_on_metrics(settings: HeadwaterSettings) -> dict[str, float]:
    for path in metrics_dir(settings).glob("*.json"):
        record = orjson.loads(path.read_bytes())
        if record["role"] == "supervisor" and pid_alive(int(record["pid"])):
            text = httpx.get(record["url"], timeout=10).text
            return {
                s.labels["process"]: s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name == "headwater_process_restarts_total"
            }
    return {}


def test_killed_processes_come_back_and_every_event_gets_one_prediction(
    kafka: HeadwaterSettings, unique: str
) -> None:
    settings = kafka.model_copy(
        update={"topic_prefix": f"sv-{unique}-", "supervisor_backoff_s": 0.5}
    )
    started = _headwater(settings, "up", "--json")
    assert started.returncode == 0, started.stderr
    warehouse: HostedWarehouse | None = None
    try:
        register_versions(settings, settings.serving_model, unique, 1, features=MODEL_FEATURES)
        bus = EventBus(settings)
        publish_routing(bus, routing_event(settings.serving_model, {1: 1.0}))
        address = running_host(settings)
        assert address is not None
        warehouse = HostedWarehouse(address.url, token=address.token)
        db = warehouse.database
        scored = (
            f"SELECT uniqExact(request_id) FROM {db}.predictions FINAL "
            f"WHERE entity_id LIKE '{unique}-%' AND source = 'kafka' AND NOT fallback"
        )
        events = [transaction(i, card=f"{unique}-{i % 7}") for i in range(EVENTS)]
        for record in events[: EVENTS // 2]:
            bus.send_bytes("events.raw", orjson.dumps(record), str(record["card_id"]).encode())
        bus.flush()
        wait_until(
            lambda: int(warehouse.query(scored).scalar()) > 0,
            180,
            "the first predictions",
            process_log(settings, "scorer"),
        )
        # Mid-stream: both die at once, with the second half of the stream still to come.
        before = stream_process_pids(settings)
        for name in KILLED:
            pid = before[name]
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        for record in events[EVENTS // 2 :]:
            bus.send_bytes("events.raw", orjson.dumps(record), str(record["card_id"]).encode())
        bus.flush()

        def back() -> bool:
            now = stream_process_pids(settings)
            return all(now[n] is not None and now[n] != before[n] for n in KILLED)

        wait_until(
            back, 120, "the killed processes to be restarted", process_log(settings, "supervisor")
        )
        wait_until(
            lambda: int(warehouse.query(scored).scalar()) == EVENTS,
            240,
            f"a prediction for each of the {EVENTS} events",
            process_log(settings, "scorer"),
        )
        # Exactly one row per event in the warehouse, and nothing else.
        rows = warehouse.query(
            f"SELECT count() FROM {db}.predictions FINAL WHERE entity_id LIKE '{unique}-%'"
        ).scalar()
        assert int(rows) == EVENTS
        # On the topic, a replay after the kill may repeat a prediction (same request id, same
        # output): at-least-once delivery, made exactly-once per request id by the warehouse.
        codec = make_codec(settings)
        ids = Counter(
            codec.decode(r.value)[1]["request_id"]
            for r in read_topic(settings, "predictions", group=f"p-{unique}", idle_timeout_s=5)
        )
        assert set(ids) == {str(e["event_id"]) for e in events}
        print(f"predictions on the topic: {sum(ids.values())} for {EVENTS} events")

        # The restarts are recorded: status (the supervisor's state) and its /metrics.
        records = {r.name: r for r in supervised(settings)}
        assert {n: records[n].restarts for n in KILLED} == dict.fromkeys(KILLED, 1)
        assert {n: records[n].last_exit for n in KILLED} == dict.fromkeys(KILLED, -9)
        assert all(r.state == "running" for r in records.values()), records
        assert {n: _restarts_on_metrics(settings).get(n) for n in KILLED} == dict.fromkeys(
            KILLED, 1.0
        )
        status = _headwater(settings, "status")
        assert status.returncode == 0, status.stderr
        assert "processes" in status.stdout and "restarts" in status.stdout
        after = stream_process_pids(settings)
        assert all(pid is not None and pid_alive(pid) for pid in after.values()), after

        # The supervisor itself killed: its processes run on until `up` runs again, which
        # replaces them instead of doubling them.
        supervisor = after.pop("supervisor")
        assert supervisor is not None
        os.kill(supervisor, signal.SIGKILL)
        again = _headwater(settings, "up", "--json")
        assert again.returncode == 0, again.stderr
        orphans = [pid for pid in after.values() if pid is not None]
        # replaced: each orphan gets SIGTERM and may take a moment to exit on a busy machine
        wait_until(lambda: not any(pid_alive(pid) for pid in orphans), 60, "orphans gone")
        renewed = stream_process_pids(settings)
        assert all(pid is not None and pid_alive(pid) for pid in renewed.values()), renewed
    finally:
        if warehouse is not None:
            warehouse.close()
        stop_stream_processes(settings)
        host = running_host_pid(settings)
        if host is not None:
            stop_pid(host)
            host_file(settings).unlink(missing_ok=True)
    assert not any(stream_process_pids(settings).values())
