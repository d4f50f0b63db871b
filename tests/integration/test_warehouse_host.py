"""The warehouse host, started for real (``python -m headwater.infra.warehouse_host``) on the
real engine, is closed: no token, no answer; no JSON, no answer; nothing that reaches files or
the network; and one slow query does not hold up an insert."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa  # type: ignore[import-untyped]
import pytest

from headwater.core.errors import WarehouseError, WarehouseRefused
from headwater.core.settings import HeadwaterSettings
from headwater.infra.warehouse import ARROW_STREAM, HostedWarehouse, arrow_stream
from headwater.infra.warehouse_host import HostAddress, host_file, running_host
from tests.conftest import settings_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = int(os.environ.get("HEADWATER_TEST_PORT_BASE", "29000"))
QUERY_TIMEOUT_S = 20


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostAddress]:
    home = tmp_path_factory.mktemp("warehouse-host")
    # Asks for every interface: the host must listen on loopback all the same.
    settings = HeadwaterSettings(home=home, warehouse_host_port=BASE + 131, bind_host="0.0.0.0")
    env = {
        **settings_env(settings),
        "HEADWATER_BIND_HOST": "0.0.0.0",
        "HEADWATER_WAREHOUSE_QUERY_TIMEOUT_S": str(QUERY_TIMEOUT_S),
    }
    log = (home / "host.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "headwater.infra.warehouse_host"],
        env=env,
        cwd=home,  # not a checkout: `python -m` puts the working directory first on the path
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while (address := running_host(settings)) is None:
            assert process.poll() is None, (home / "host.log").read_text()
            assert time.monotonic() < deadline, "the warehouse host did not start in 120 s"
            time.sleep(0.3)
        assert stat.S_IMODE(host_file(settings).stat().st_mode) == 0o600
        yield address
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


@pytest.fixture
def client(host: HostAddress) -> Iterator[HostedWarehouse]:
    warehouse = HostedWarehouse(host.url, token=host.token)
    yield warehouse
    warehouse.close()


def test_it_listens_on_loopback_only(host: HostAddress) -> None:
    assert host.url.startswith("http://127.0.0.1:")


def test_a_request_without_the_token_gets_401(host: HostAddress) -> None:
    body = b'{"sql": "SELECT 1"}'
    json_type = {"Content-Type": "application/json"}
    assert httpx.post(f"{host.url}/query", content=body, headers=json_type).status_code == 401
    wrong = {**json_type, "Authorization": "Bearer not-the-token"}
    assert httpx.post(f"{host.url}/query", content=body, headers=wrong).status_code == 401
    assert httpx.get(f"{host.url}/health").status_code == 401
    right = {**json_type, "Authorization": f"Bearer {host.token}"}
    answer = httpx.post(f"{host.url}/query", content=body, headers=right)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [[1]]


def test_a_body_that_is_not_json_typed_is_refused(host: HostAddress) -> None:
    """A web page can POST text/plain to another origin without a preflight: refused."""
    token = {"Authorization": f"Bearer {host.token}"}
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        headers = {**token, "Content-Type": content_type} if content_type else token
        answer = httpx.post(f"{host.url}/command", content=b'{"sql": "SELECT 1"}', headers=headers)
        assert answer.status_code == 415, (content_type, answer.text)


def test_arrow_columns_are_taken_as_an_insert_only(
    host: HostAddress, client: HostedWarehouse
) -> None:
    """The sink's Arrow-decoded columns go as an Arrow stream (a type that, like JSON, a web
    page cannot post without a preflight): to /insert, into a named table, and nowhere else."""
    client.command(
        "CREATE TABLE IF NOT EXISTS headwater.host_arrow (s String, m Map(String, Float64)) "
        "ENGINE = MergeTree ORDER BY s"
    )
    maps = pa.array([{"x": 1.5}, {}], pa.map_(pa.string(), pa.float64()))
    assert client.insert_columns("host_arrow", {"s": pa.array(["a", "b"]), "m": maps}) == 2
    rows = client.query("SELECT s, m FROM headwater.host_arrow ORDER BY s").rows
    assert rows == [["a", {"x": 1.5}], ["b", {}]]
    stream = arrow_stream({"s": pa.array(["c"])})
    assert stream is not None
    headers = {"Authorization": f"Bearer {host.token}", "Content-Type": ARROW_STREAM}
    for path in ("/command", "/query"):
        answer = httpx.post(f"{host.url}{path}", content=stream, headers=headers)
        assert answer.status_code == 415, (path, answer.text)
    refused = httpx.post(
        f"{host.url}/insert", params={"table": "host_arrow; DROP"}, content=stream, headers=headers
    )
    assert refused.status_code == 403, refused.text
    garbled = httpx.post(
        f"{host.url}/insert", params={"table": "host_arrow"}, content=b"junk", headers=headers
    )
    assert garbled.status_code == 400, garbled.text
    assert client.query("SELECT count() FROM headwater.host_arrow").scalar() == 2


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        "select * from FILE('/etc/hostname', 'LineAsString')",
        "SELECT file('/etc/hostname')",  # the scalar file(), which read-only mode allows
        "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
        "SELECT * FROM s3('http://127.0.0.1:1/b/k', 'CSV')",
        "SELECT * FROM remote('127.0.0.1:1', system.one)",
        "SELECT * FROM (SELECT * FROM file('/etc/hostname', 'LineAsString'))",
        "DESCRIBE TABLE file('/etc/hostname', 'LineAsString')",
        "SELECT 1 INTO OUTFILE '/tmp/headwater-host-test.csv'",
        "SELECT * FROM file('/etc/hostname', 'LineAsString') SETTINGS readonly = 0",
        "SELECT 1; DROP DATABASE headwater",
        "INSERT INTO FUNCTION file('/tmp/headwater-host-test.csv', 'CSV') SELECT 1",
        "DROP DATABASE headwater",
    ],
)
def test_a_query_that_reaches_outside_is_refused(client: HostedWarehouse, sql: str) -> None:
    with pytest.raises(WarehouseError) as refused:
        client.query(sql)
    assert Path("/etc/hostname").read_text().strip() not in str(refused.value)
    assert client.query("SELECT count() FROM system.databases WHERE name = 'headwater'").scalar()
    assert not Path("/tmp/headwater-host-test.csv").exists()


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO FUNCTION file('/tmp/headwater-host-test.csv', 'CSV') SELECT 1",
        "CREATE TABLE headwater.leak (line String) ENGINE = File(LineAsString, '/etc/hostname')",
        "CREATE TABLE headwater.leak ENGINE = Memory AS SELECT * FROM url('http://127.0.0.1:1/')",
        "CREATE TABLE headwater.leak (line String DEFAULT file('/etc/hostname')) ENGINE = Memory",
        "CREATE DICTIONARY headwater.leak (a String) PRIMARY KEY a "
        "SOURCE(FILE(path '/etc/hostname' format 'LineAsString')) LAYOUT(FLAT()) LIFETIME(0)",
        "SYSTEM FLUSH LOGS",
        "SET readonly = 0",
        "BACKUP DATABASE headwater TO File('/tmp/headwater-host-test')",
        "CREATE DATABASE IF NOT EXISTS headwater_x; DROP DATABASE headwater",
    ],
)
def test_a_command_that_reaches_outside_is_refused(client: HostedWarehouse, sql: str) -> None:
    with pytest.raises(WarehouseError):  # refused by the guard, or by the parser
        client.command(sql)
    assert not client.query("EXISTS TABLE headwater.leak").scalar()
    assert client.query("EXISTS DATABASE headwater").scalar()
    assert not Path("/tmp/headwater-host-test.csv").exists()


def test_the_platform_statements_still_run(host: HostAddress, client: HostedWarehouse) -> None:
    client.command("CREATE DATABASE IF NOT EXISTS headwater_guard")
    client.command(
        "CREATE TABLE IF NOT EXISTS headwater_guard.notes (n Int32, s String) "
        "ENGINE = ReplacingMergeTree ORDER BY n"
    )
    client.command("ALTER TABLE headwater_guard.notes ADD COLUMN IF NOT EXISTS t String")
    other = HostedWarehouse(client.url, "headwater_guard", token=host.token)
    try:
        assert other.insert("notes", ["n", "s"], [[1, "a'b"], [2, "c"]]) == 2
    finally:
        other.close()
    total = "SELECT sum(n) FROM headwater_guard.notes FINAL WHERE n IN (SELECT * FROM numbers(5))"
    assert client.query(total).scalar() == 3
    assert client.query("SHOW TABLES FROM headwater_guard").rows == [["notes"]]
    aliased = (
        "SELECT max(n) AS n FROM headwater_guard.notes SETTINGS prefer_column_name_to_alias = 1"
    )
    assert client.query(aliased).scalar() == 2
    with pytest.raises(WarehouseError, match="readonly"):  # callers never lift the time limit
        client.query("SELECT 1 SETTINGS max_execution_time = 0")
    with pytest.raises(WarehouseRefused):  # an insert names its table, never SQL
        client.insert("notes (n) SELECT 1; --", ["n"], [[1]])


def test_a_slow_query_does_not_block_an_insert(client: HostedWarehouse) -> None:
    client.command(
        "CREATE TABLE IF NOT EXISTS headwater.host_inserts (n UInt64) ENGINE = MergeTree ORDER BY n"
    )
    slow_error: list[str] = []
    slow_started = threading.Event()

    def slow() -> None:
        slow_started.set()
        try:  # a scan far longer than the host's query time limit
            client.query("SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) = 1")
        except WarehouseError as error:
            slow_error.append(str(error))

    slow_query = threading.Thread(target=slow)
    slow_query.start()
    slow_started.wait()
    time.sleep(1.0)  # let it reach the engine; the test stays right if it has not
    assert client.insert("host_inserts", ["n"], [[1], [2]]) == 2
    assert client.query("SELECT sum(n) FROM headwater.host_inserts").scalar() == 3
    inserted_while_slow_ran = slow_query.is_alive()
    slow_query.join(timeout=QUERY_TIMEOUT_S + 60)
    assert inserted_while_slow_ran, "the insert waited for the slow query"
    assert slow_error and "Timeout exceeded" in slow_error[0], slow_error
