"""The warehouse host: the one process that owns the embedded ClickHouse engine while the
platform runs, serving the :class:`~headwater.infra.warehouse.Warehouse` calls of every other
process over HTTP.

It is closed to everyone but the platform's own processes:

* it listens on 127.0.0.1 only, whatever ``HEADWATER_BIND_HOST`` says;
* every request carries the random token the host wrote into its state file (mode 0600), so
  only a process that can read ``HEADWATER_HOME`` gets in;
* a POST must say ``Content-Type: application/json`` (or, for an insert of Arrow columns,
  ``application/vnd.apache.arrow.stream``), which a web page cannot send to another origin
  without a preflight the host never answers;
* statements that reach files or the network are refused (:mod:`headwater.infra.sql_guard`);
* queries run on read-only connections of their own, with a time limit, so a slow query never
  holds up an insert (chDB runs one connection's statements one at a time, but several
  connections of one process side by side).

Run by ``headwater up`` as ``python -m headwater.infra.warehouse_host``; it applies the
migrations, writes its pid, address and token under ``HEADWATER_HOME`` and serves until SIGTERM.
"""

from __future__ import annotations

import hmac
import json
import os
import queue
import re
import secrets
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

from headwater.core.errors import WarehouseError, WarehouseRefused
from headwater.core.settings import HeadwaterSettings, load_settings
from headwater.infra.local_processes import pid_alive
from headwater.infra.migrations import apply_migrations
from headwater.infra.sql_guard import Endpoint, refusal
from headwater.infra.sql_literals import render
from headwater.infra.warehouse import (
    ARROW_STREAM,
    ChdbWarehouse,
    QueryResult,
    decode_rows,
    warehouse_path,
)

LOOPBACK = "127.0.0.1"
READERS = 4  # read-only connections: queries that may run side by side
# Settings a caller's query may set: they change what it computes, never what it may reach.
QUERY_SETTINGS = frozenset({"prefer_column_name_to_alias", "join_use_nulls"})
_SETTINGS_CLAUSE = re.compile(r"\bSETTINGS\s+(\w+ = \w+(?:, \w+ = \w+)*)(?:\s+FORMAT\s+\w+)?$")
_IDENTIFIER = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def host_file(settings: HeadwaterSettings) -> Path:
    return settings.home / "warehouse-host.json"


@dataclass(frozen=True)
class HostAddress:
    """Where the host listens and the token it accepts, as its state file says."""

    pid: int
    url: str
    token: str = ""


def _read_host_file(settings: HeadwaterSettings) -> HostAddress | None:
    try:
        info = json.loads(host_file(settings).read_text())
        return HostAddress(int(info["pid"]), str(info["url"]), str(info.get("token", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_host_file(settings: HeadwaterSettings, address: HostAddress) -> None:
    """Only the owner may read the token: written 0600 to a new file, then moved into place."""
    path = host_file(settings)
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump({"pid": address.pid, "url": address.url, "token": address.token}, file)
    temporary.replace(path)


def running_host(settings: HeadwaterSettings) -> HostAddress | None:
    """The live warehouse host for this state directory, if one runs."""
    address = _read_host_file(settings)
    if address is None or not pid_alive(address.pid) or address.pid == os.getpid():
        return None
    try:
        headers = {"Authorization": f"Bearer {address.token}"}
        httpx.get(f"{address.url}/health", headers=headers, timeout=2.0).raise_for_status()
    except httpx.HTTPError:
        return None
    return address


def running_host_url(settings: HeadwaterSettings) -> str | None:
    """The URL of the live warehouse host for this state directory, if one runs."""
    address = running_host(settings)
    return address.url if address else None


def running_host_pid(settings: HeadwaterSettings) -> int | None:
    address = _read_host_file(settings)
    return address.pid if address and pid_alive(address.pid) else None


class _Readers:
    """Read-only connections to the engine, each running one query at a time, with a time
    limit the engine enforces (``max_execution_time``) and the host waits no longer than.

    ``readonly=1`` also keeps a query from changing any setting, so a query that sets one of
    :data:`QUERY_SETTINGS` (which change what a query means, never what it may reach) runs on a
    connection where that value was set before it became read-only."""

    def __init__(self, path: Path, timeout_s: float, size: int = READERS) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._idle: dict[tuple[tuple[str, str], ...], queue.Queue[Any]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(size, thread_name_prefix="warehouse-reader")
        for _ in range(size):
            self._idle.setdefault((), queue.Queue()).put(self._connect(()))
        self.table_functions = frozenset(
            row.lower()
            for row in self._run("SELECT name FROM system.table_functions", "TabSeparatedRaw")
            .decode()
            .split()
        )

    def _connect(self, preset: tuple[tuple[str, str], ...]) -> Any:
        import chdb

        connection = chdb.connect(str(self.path))  # type: ignore[no-untyped-call]
        connection.query("SET output_format_json_quote_64bit_integers=0")
        connection.query(f"SET max_execution_time={self.timeout_s:g}")
        for name, value in preset:
            connection.query(f"SET {name}={value}")
        connection.query("SET readonly=1")  # from now on no setting of it can change
        return connection

    def _idle_for(self, sql: str) -> queue.Queue[Any]:
        preset = query_settings(sql)
        with self._lock:
            if preset not in self._idle:
                self._idle[preset] = queue.Queue()
                self._idle[preset].put(self._connect(preset))
            return self._idle[preset]

    def _run(self, sql: str, fmt: str) -> bytes:
        idle = self._idle_for(sql)
        connection = idle.get()
        try:
            return bytes(connection.query(sql, fmt).bytes())
        except Exception as error:
            raise WarehouseError(f"ClickHouse (the warehouse host's engine): {error}") from None
        finally:
            idle.put(connection)

    def run(self, sql: str, fmt: str = "JSONCompact") -> bytes:
        """Run on a free reader; a query still waiting or running after the time limit is
        answered with an error naming it."""
        future = self._pool.submit(self._run, sql, fmt)
        try:
            return future.result(timeout=self.timeout_s + 5.0)
        except FutureTimeout:
            raise WarehouseError(
                f"query did not finish within {self.timeout_s:g} s "
                "(HEADWATER_WAREHOUSE_QUERY_TIMEOUT_S)"
            ) from None

    def canonical(self, sql: str, endpoint: Endpoint) -> str:
        """The statement as ClickHouse re-prints it, after the guard accepted it."""
        text = self.run(f"SELECT formatQuerySingleLine({render(sql)})", "TabSeparatedRaw")
        canonical = text.decode().rstrip("\n")
        ast = self.run(f"EXPLAIN AST {canonical}", "TabSeparatedRaw").decode().splitlines()
        reason = refusal(canonical, ast, endpoint, self.table_functions)
        if reason is not None:
            raise WarehouseRefused(f"the warehouse host refused the statement: {reason}")
        return canonical

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for idle in self._idle.values():
            while not idle.empty():
                idle.get().close()


def query_settings(sql: str) -> tuple[tuple[str, str], ...]:
    """The :data:`QUERY_SETTINGS` a canonical query's closing ``SETTINGS`` clause sets (others
    are left to the read-only connection to refuse).

    >>> query_settings("SELECT a AS b FROM t SETTINGS prefer_column_name_to_alias = 1")
    (('prefer_column_name_to_alias', '1'),)
    >>> query_settings("SELECT 1 SETTINGS max_execution_time = 0, join_use_nulls = 1")
    (('join_use_nulls', '1'),)
    """
    clause = _SETTINGS_CLAUSE.search(sql)
    if clause is None:
        return ()
    pairs = (pair.split("=") for pair in clause.group(1).split(","))
    chosen = {name.strip(): value.strip() for name, value in pairs}
    return tuple(
        (name, value)
        for name, value in sorted(chosen.items())
        if name in QUERY_SETTINGS and value.isdigit()
    )


def _identifier(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or not set(value) <= _IDENTIFIER:
        raise WarehouseRefused(f"the warehouse host refused the {what} name {value!r}")
    return value


class _Handler(BaseHTTPRequestHandler):
    warehouse: ChdbWarehouse
    readers: _Readers
    token: str

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the platform logs what matters itself."""

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        offered = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if hmac.compare_digest(offered.encode(), self.token.encode()):
            return True
        self._reply(401, {"error": "the warehouse host needs its token (warehouse-host.json)"})
        return False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path == "/health":
            self._reply(200, {"ok": True, "database": self.warehouse.database})
        else:
            self._reply(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        payload = self.rfile.read(length)
        if not self._authorized():
            return
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        route = urlsplit(self.path)
        arrow = content_type == ARROW_STREAM and route.path == "/insert"
        if content_type != "application/json" and not arrow:
            self._reply(
                415,
                {"error": f"the warehouse host takes application/json ({ARROW_STREAM}: inserts)"},
            )
            return
        try:
            if arrow:
                self._insert_arrow(parse_qs(route.query), payload)
            else:
                self._route(orjson.loads(payload))
        except WarehouseRefused as error:
            self._reply(403, {"error": str(error)})
        except WarehouseError as error:
            self._reply(400, {"error": str(error)})
        except (KeyError, ValueError, TypeError) as error:
            self._reply(400, {"error": f"bad warehouse request to {self.path}: {error!r}"})

    def _insert_arrow(self, query: dict[str, list[str]], payload: bytes) -> None:
        """An insert whose columns came as one Arrow IPC stream (what
        :meth:`HostedWarehouse.insert_columns` sends of columns decoded as Arrow); ``table``
        and ``database`` are in the query string, the columns are the stream's."""
        import pyarrow as pa  # type: ignore[import-untyped]

        database = query.get("database", [self.warehouse.database])[0]
        database = _identifier(database, "database")
        table = _identifier(query["table"][0], "table")
        with pa.ipc.open_stream(payload) as reader:
            received = reader.read_all()
        columns = {
            _identifier(name, "column"): received.column(name).combine_chunks()
            for name in received.column_names
        }
        inserted = self.warehouse.insert_columns_into(database, table, columns)
        self._reply(200, {"inserted": inserted})

    def _route(self, body: dict[str, Any]) -> None:
        if self.path == "/query":
            canonical = self.readers.canonical(str(body["sql"]), "query")
            result = QueryResult.from_json_compact(self.readers.run(canonical))
            self._reply(
                200, {"columns": result.columns, "types": result.types, "rows": result.rows}
            )
        elif self.path == "/command":
            self.warehouse.command(self.readers.canonical(str(body["sql"]), "command"))
            self._reply(200, {})
        elif self.path == "/insert":
            database = _identifier(body.get("database") or self.warehouse.database, "database")
            table = _identifier(body["table"], "table")
            columns = [_identifier(c, "column") for c in body["columns"]]
            if "json_columns" in body:  # rendered by the client (HostedWarehouse.insert_columns)
                parsed = _json_columns_payload(body["json_columns"], columns)
                inserted = self.warehouse.insert_columns_into(database, table, parsed)
            else:
                rows = decode_rows(body["rows"])
                inserted = self.warehouse.insert_into(database, table, columns, rows)
            self._reply(200, {"inserted": inserted})
        else:
            self._reply(404, {"error": f"no route {self.path}"})


def _json_columns_payload(payload: object, columns: list[str]) -> dict[str, list[Any]]:
    """A client-rendered ``JSONColumns`` body, parsed and checked to be exactly one JSON object
    of (some of) the named columns, each a list: its columns are what is inserted, so nothing
    else may ride along. (orjson first; the standard library where the client wrote NaN or
    infinities, as JSON5 does.)"""
    text = str(payload)
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            parsed = json.loads(text)
        except ValueError as error:
            raise WarehouseRefused(f"json_columns is not one JSON document: {error}") from None
    if not isinstance(parsed, dict) or not set(parsed) <= set(columns):
        raise WarehouseRefused("json_columns must be an object of the named columns")
    if not all(isinstance(values, list) for values in parsed.values()):
        raise WarehouseRefused("json_columns must give each column's values as an array")
    return parsed


def serve(settings: HeadwaterSettings, token: str | None = None) -> None:
    """Own the engine and serve it until SIGTERM or SIGINT. ``token`` is the one clients must
    send (a fresh random one if None)."""
    warehouse = ChdbWarehouse(warehouse_path(settings), settings.clickhouse_database)
    apply_migrations(warehouse)
    readers = _Readers(warehouse_path(settings), settings.warehouse_query_timeout_s)
    token = token or new_token()
    attributes = {"warehouse": warehouse, "readers": readers, "token": token}
    handler = type("Handler", (_Handler,), attributes)
    server = ThreadingHTTPServer((LOOPBACK, settings.warehouse_host_port), handler)
    server.daemon_threads = True
    _write_host_file(settings, HostAddress(os.getpid(), host_url(settings), token))

    def _stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        host_file(settings).unlink(missing_ok=True)
        readers.close()
        warehouse.close()


def host_url(settings: HeadwaterSettings) -> str:
    return f"http://{LOOPBACK}:{settings.warehouse_host_port}"


def new_token() -> str:
    return secrets.token_urlsafe(32)


if __name__ == "__main__":
    serve(load_settings())
