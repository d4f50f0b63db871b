"""`headwater up` runs the stream processes: produced lines become features, warehouse rows and
dead letters, and the processes show in `status` and stop with the platform."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from infra.platform import stop_pid
from infra.settings import HeadwaterSettings
from infra.warehouse import HostedWarehouse
from infra.warehouse_host import host_file, running_host_pid, running_host_url
from streams.processes import stop_stream_processes, stream_process_pids
from tests.streams.poison import transaction
from tests.streams.workers import REPO, wait_until, worker_env

pytestmark = pytest.mark.integration


def _headwater(settings: HeadwaterSettings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args],
        env=worker_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _count(warehouse: HostedWarehouse, sql: str) -> int:
    return int(warehouse.query(sql).scalar())


def test_up_runs_worker_and_sink_end_to_end(
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
        assert processes["feature_worker"] and processes["sink"]
        produced = _headwater(settings, "produce", "events.raw", "--file", str(source))
        assert produced.returncode == 0, produced.stderr
        url = running_host_url(settings)
        assert url is not None
        warehouse = HostedWarehouse(url)
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
                ),
                120,
                "features and dead letters in the warehouse",
                settings.home / "feature_worker.log",
            )
            reasons = warehouse.query(
                f"SELECT reason_code FROM {db}.deadletter FINAL "
                f"WHERE source_topic = '{settings.topic('events.raw')}' ORDER BY reason_code"
            ).rows
            assert reasons == [["OUT_OF_RANGE"], ["UNKNOWN_CATEGORY"]]
            events = f"SELECT count() FROM {db}.events FINAL WHERE entity_id LIKE '{unique}-%'"
            assert _count(warehouse, events) == 30
        finally:
            warehouse.close()
    finally:
        # `down` would also stop the session's broker; stop what `up` added to it instead.
        assert stop_stream_processes(settings) == {"feature_worker": True, "sink": True}
        host = running_host_pid(settings)
        if host is not None:
            stop_pid(host)
            host_file(settings).unlink(missing_ok=True)
    assert stream_process_pids(settings) == {"feature_worker": None, "sink": None}
