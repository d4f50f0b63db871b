"""`headwater up` runs the platform's processes: produced lines become features, predictions
(once a model is routed), warehouse rows and dead letters; the processes show in `status`, idle
while there is no model, and stop with the platform."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.infra.local_processes import pid_alive
from headwater.infra.supervision import process_log
from headwater.infra.warehouse import HostedWarehouse
from headwater.infra.warehouse_host import (
    host_file,
    running_host,
    running_host_pid,
)
from headwater.operate.platform import stop_pid
from headwater.operate.processes import STREAM_PROCESSES, stop_stream_processes, stream_process_pids
from headwater.serving.routing import publish_routing, routing_event
from tests.serving.modelkit import register_versions
from tests.streams.poison import transaction
from tests.streams.workers import REPO, wait_until, worker_env

pytestmark = pytest.mark.integration


def _headwater(settings: HeadwaterSettings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater.cli.main", *args],
        env=worker_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _status_of(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return 0  # not listening yet


def _count(warehouse: HostedWarehouse, sql: str) -> int:
    return int(warehouse.query(sql).scalar())


MODEL_FEATURES = ("txn_count_1h", "amount_sum_1h", "amount_max_1h")  # of headwater.demo.features


def test_up_runs_every_process_end_to_end(
    kafka: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    settings = kafka.model_copy(update={"topic_prefix": f"up-{unique}-"})
    lines = [transaction(i, card=f"{unique}-{i % 5}") for i in range(30)]
    lines.append(transaction(90, card=f"{unique}-0", amount=-4.0))  # OUT_OF_RANGE
    lines.append(transaction(91, card=f"{unique}-0", merchant_category="casino"))
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")

    started = _headwater(settings, "up", "--json")
    assert started.returncode == 0, started.stderr
    try:
        processes = json.loads(started.stdout)["processes"]
        assert all(processes[name] for name in STREAM_PROCESSES), processes
        # No model yet: the scorers idle (the HTTP server says so) rather than fail.
        health = f"http://127.0.0.1:{settings.http_port}/healthz"
        wait_until(
            lambda: _status_of(health) == 503,
            120,
            "the HTTP server",
            process_log(settings, "http_server"),
        )
        assert "no routing yet" in httpx.get(health, timeout=10).text
        running = stream_process_pids(settings)
        assert all(pid is not None and pid_alive(pid) for pid in running.values()), running
        register_versions(settings, settings.serving_model, unique, 1, features=MODEL_FEATURES)
        publish_routing(EventBus(settings), routing_event(settings.serving_model, {1: 1.0}))
        wait_until(
            lambda: _status_of(health) == 200,
            60,
            "the routing to reach HTTP serving",
            process_log(settings, "http_server"),
        )
        produced = _headwater(settings, "produce", "events.raw", "--file", str(source))
        assert produced.returncode == 0, produced.stderr
        address = running_host(settings)
        assert address is not None
        warehouse = HostedWarehouse(address.url, token=address.token)
        db = warehouse.database
        try:
            wait_until(
                lambda: (
                    _count(
                        warehouse,
                        f"SELECT count() FROM {db}.features FINAL "
                        f"WHERE entity_id LIKE '{unique}-%'",
                    )
                    == 30
                    and _count(
                        warehouse,
                        f"SELECT count() FROM {db}.deadletter FINAL "
                        f"WHERE source_topic = '{settings.topic('events.raw')}'",
                    )
                    == 2
                    and _count(
                        warehouse,
                        f"SELECT count() FROM {db}.predictions FINAL "
                        f"WHERE entity_id LIKE '{unique}-%' AND source = 'kafka' "
                        "AND NOT fallback",
                    )
                    == 30
                ),
                120,
                "features and dead letters in the warehouse",
                process_log(settings, "feature_worker"),
            )
            reasons = warehouse.query(
                f"SELECT reason_code FROM {db}.deadletter FINAL "
                f"WHERE source_topic = '{settings.topic('events.raw')}' ORDER BY reason_code"
            ).rows
            assert reasons == [["OUT_OF_RANGE"], ["UNKNOWN_CATEGORY"]]
            # The sink lands each topic at its own pace: the events may trail the features.
            events = f"SELECT count() FROM {db}.events FINAL WHERE entity_id LIKE '{unique}-%'"
            wait_until(lambda: _count(warehouse, events) >= 30, 60, "30 events in the warehouse")
            assert _count(warehouse, events) == 30
        finally:
            warehouse.close()
    finally:
        # `down` would also stop the session's broker; stop what `up` added to it instead,
        # everything before asserting, so a failure leaves no process behind.
        stopped = stop_stream_processes(settings)
        host = running_host_pid(settings)
        if host is not None:
            stop_pid(host)
            host_file(settings).unlink(missing_ok=True)
        exited = [name for name, ok in stopped.items() if not ok]
        logs = {name: _tail(process_log(settings, name)) for name in exited}
        assert not exited, f"exited before the end of the test: {exited}; their logs: {logs}"
    assert not any(stream_process_pids(settings).values())


def _tail(log: Path, size: int = 3000) -> str:
    return log.read_text(errors="replace")[-size:] if log.exists() else "(no log)"
