"""A password planted in the URL settings (ClickHouse, schema registry) appears in no output:
not in the errors of a failing connection, not in a bad setting's message, not in
``headwater status --json``, the dashboard's error JSON, the processes' logs or ``/metrics``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from headwater.core.errors import ConfigError, SchemaError, WarehouseError
from headwater.core.settings import HeadwaterSettings, load_settings
from headwater.infra.dashboard.server import DashboardServer
from headwater.infra.warehouse import Columns, QueryResult, ServerWarehouse, connect_warehouse
from headwater.infra.warehouse_metrics import WarehouseCollector
from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.codec import ConfluentSchemaRegistry
from tests.conftest import settings_env

pytestmark = pytest.mark.integration

BASE = int(os.environ.get("HEADWATER_TEST_PORT_BASE", "29000"))
PASSWORD = "pl4nted-S3cret"
CLOSED = BASE + 133  # nothing listens here
CLICKHOUSE = f"http://ana:{PASSWORD}@127.0.0.1:{CLOSED}/"
REGISTRY = f"http://ana:{PASSWORD}@127.0.0.1:{CLOSED}"


def _clean(text: str) -> str:
    assert PASSWORD not in text, text
    return text


@pytest.fixture
def planted(tmp_path: Path) -> HeadwaterSettings:
    return HeadwaterSettings(
        home=tmp_path,
        clickhouse_url=CLICKHOUSE,  # type: ignore[arg-type]
        schema_registry_url=REGISTRY,  # type: ignore[arg-type]
        kafka_bootstrap=f"127.0.0.1:{CLOSED}",
        kafka_timeout_s=2,
        metrics_port=0,
    )


def _env(settings: HeadwaterSettings) -> dict[str, str]:
    return {
        **settings_env(settings),
        "HEADWATER_CLICKHOUSE_URL": CLICKHOUSE,
        "HEADWATER_SCHEMA_REGISTRY_URL": REGISTRY,
        "HEADWATER_KAFKA_BOOTSTRAP": f"127.0.0.1:{CLOSED}",
        "HEADWATER_KAFKA_TIMEOUT_S": "2",
        "HEADWATER_METRICS_PORT": "0",
    }


def _run(settings: HeadwaterSettings, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        env=_env(settings),
        cwd=settings.home,  # not a checkout: `python -m` puts it first on the path
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_settings_never_show_the_urls(planted: HeadwaterSettings) -> None:
    _clean(repr(planted) + str(planted.model_dump()) + planted.model_dump_json())
    assert planted.warehouse_mode == "server"


def test_a_bad_url_setting_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_CLICKHOUSE_URL", f"tcp://ana:{PASSWORD}@127.0.0.1:9000")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "HEADWATER_CLICKHOUSE_URL" in _clean(str(raised.value))


def test_a_failing_connection_names_the_server_not_the_password(
    planted: HeadwaterSettings, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(WarehouseError) as raised:
        connect_warehouse(planted)
    message = _clean(str(raised.value))
    assert f"127.0.0.1:{CLOSED}" in message and "***" in message
    with pytest.raises(SchemaError) as refused:
        ConfluentSchemaRegistry(REGISTRY).id_for(SchemaCatalog.default().get("dev.headwater.Event"))
    assert f"127.0.0.1:{CLOSED}" in _clean(str(refused.value))
    _clean(caplog.text)


class _Reconnecting:
    """A warehouse seam that opens the planted server for every statement: each one fails the
    way a server that went away fails."""

    database = "headwater"

    def command(self, sql: str) -> None:
        ServerWarehouse(CLICKHOUSE)

    def query(self, sql: str) -> QueryResult:
        ServerWarehouse(CLICKHOUSE)
        raise AssertionError("unreachable: the planted server does not answer")

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        ServerWarehouse(CLICKHOUSE)
        return 0

    def insert_columns(self, table: str, columns: Columns) -> int:
        ServerWarehouse(CLICKHOUSE)
        return 0

    def close(self) -> None:
        pass


def test_the_dashboard_error_json_and_metrics_show_no_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = DashboardServer(_Reconnecting(), "127.0.0.1", 0, 5.0).start()
    try:
        for path in ("api/panels", ""):
            answer = httpx.get(f"{server.url}{path}", timeout=60)
            assert "is unavailable" in _clean(answer.text), answer.text
    finally:
        server.close()
    registry = CollectorRegistry()
    registry.register(WarehouseCollector(_Reconnecting()))
    _clean(generate_latest(registry).decode())
    assert "not collected" in _clean(caplog.text)


def test_status_and_the_process_logs_show_no_password(planted: HeadwaterSettings) -> None:
    status = _run(planted, ["headwater.cli.main", "status", "--json"])
    assert "***" in _clean(status.stdout + status.stderr), status
    dashboard = _run(planted, ["headwater.infra.dashboard"])
    assert dashboard.returncode != 0
    assert "127.0.0.1" in _clean(dashboard.stdout + dashboard.stderr)
    for log in planted.home.glob("*.log"):
        _clean(log.read_text(errors="replace"))
