"""The warehouse seam: one SQL dialect (ClickHouse), three ways to reach it.

* :class:`ChdbWarehouse` — the embedded engine (chDB) on disk under ``HEADWATER_HOME``. Only one
  process may own its directory, so while the platform runs, that process is the *warehouse
  host* (:mod:`headwater.infra.warehouse_host`) and everyone else talks to it over loopback HTTP
  with
  :class:`HostedWarehouse`.
* :class:`ServerWarehouse` — a ClickHouse server through clickhouse-connect
  (``HEADWATER_CLICKHOUSE_URL``).

:func:`connect_warehouse` picks the right one from the settings.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from headwater.core.errors import WarehouseError, WarehouseRefused
from headwater.core.redaction import redact, redacted_url, url_secrets
from headwater.core.settings import HeadwaterSettings
from headwater.infra.sql_literals import values_clause


@dataclass(frozen=True)
class QueryResult:
    """Rows of a query with their column names and ClickHouse types."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]] = field(repr=False)

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    @classmethod
    def from_json_compact(cls, raw: bytes) -> QueryResult:
        """The result of a query ClickHouse wrote as ``JSONCompact``."""
        if not raw:
            return cls([], [], [])
        parsed = orjson.loads(raw)
        meta = parsed.get("meta", [])
        return cls([m["name"] for m in meta], [m["type"] for m in meta], parsed["data"])

    def scalar(self) -> Any:
        if not self.rows or not self.rows[0]:
            raise WarehouseError("query returned no rows where one value was expected")
        return self.rows[0][0]


class Warehouse(Protocol):
    """What the platform needs of ClickHouse."""

    database: str

    def command(self, sql: str) -> None: ...

    def query(self, sql: str) -> QueryResult: ...

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int: ...

    def close(self) -> None: ...


class ChdbWarehouse:
    """The embedded ClickHouse engine, owning ``path`` for the life of this process."""

    def __init__(self, path: Path, database: str = "headwater") -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.database = database
        self.path = path
        self._lock = threading.Lock()
        try:
            self._session = session.Session(str(path))  # type: ignore[no-untyped-call]
        except Exception as error:
            raise WarehouseError(
                f"cannot open the embedded ClickHouse engine at {path}: {error}. Another process "
                "may own it (is `headwater up` running? then queries go through it)"
            ) from error
        self.command("SET output_format_json_quote_64bit_integers=0")
        self.command(f"CREATE DATABASE IF NOT EXISTS {database}")

    def _run(self, sql: str, fmt: str = "CSV") -> Any:
        with self._lock:
            try:
                result = self._session.query(sql, fmt)  # type: ignore[no-untyped-call]
            except Exception as error:
                raise WarehouseError(f"ClickHouse (chDB at {self.path}): {error}") from None
        if getattr(result, "has_error", lambda: False)():
            raise WarehouseError(f"ClickHouse (chDB at {self.path}): {result.error_message()}")
        return result

    def command(self, sql: str) -> None:
        self._run(sql)

    def query(self, sql: str) -> QueryResult:
        return QueryResult.from_json_compact(self._run(sql, "JSONCompact").bytes())

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        return self.insert_into(self.database, table, columns, rows)

    def insert_into(
        self, database: str, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> int:
        """Insert into a table of any database of the engine (the warehouse host serves
        clients of other databases)."""
        if not rows:
            return 0
        payload = json_columns(columns, rows)
        if payload is None:
            names = ",".join(f"`{c}`" for c in columns)
            self._run(f"INSERT INTO {database}.{table} ({names}) VALUES {values_clause(rows)}")
        else:
            self.insert_json_columns(database, table, columns, payload)
        return len(rows)

    def insert_json_columns(
        self, database: str, table: str, columns: Sequence[str], payload: str
    ) -> None:
        """Insert rows given as :func:`json_columns` made them (the warehouse host receives
        them so: its clients render them, not its one process)."""
        names = ",".join(f"`{c}`" for c in columns)
        self._run(f"INSERT INTO {database}.{table} ({names}) FORMAT JSONColumns\n{payload}")

    def close(self) -> None:
        with self._lock:
            self._session.close()  # type: ignore[no-untyped-call]


class ServerWarehouse:
    """A ClickHouse server reached with clickhouse-connect."""

    def __init__(self, url: str, database: str = "headwater") -> None:
        import clickhouse_connect

        self.database = database
        self.url = redacted_url(url)  # the only form of the URL any message shows
        self._secrets = url_secrets(url)
        try:
            self._client = clickhouse_connect.get_client(dsn=url, connect_timeout=10)
            self._client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        except Exception as error:
            raise self._error("is unavailable", error) from None

    def _error(self, what: str, error: Exception) -> WarehouseError:
        return WarehouseError(
            redact(f"ClickHouse server at {self.url} {what}: {error}", *self._secrets)
        )

    def command(self, sql: str) -> None:
        try:
            self._client.command(sql)
        except Exception as error:
            raise self._error("rejected", error) from None

    def query(self, sql: str) -> QueryResult:
        try:
            result = self._client.query(sql)
        except Exception as error:
            raise self._error("rejected", error) from None
        types = [t.name for t in result.column_types]
        return QueryResult(list(result.column_names), types, [list(r) for r in result.result_rows])

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        try:
            self._client.insert(
                table, [list(r) for r in rows], column_names=list(columns), database=self.database
            )
        except Exception as error:
            raise self._error(f"refused an insert into {table}", error) from None
        return len(rows)

    def close(self) -> None:
        self._client.close()


def json_columns(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str | None:
    """Rows as one ``JSONColumns`` object (the values of each column as a JSON array), or None
    when a value has no JSON form (bytes): those rows go as ``VALUES`` literals instead.

    A column is written by orjson in one C call; a column with a ``null`` in it is written again
    by the standard library, which keeps NaN and ±Infinity (orjson writes them as null, which
    ClickHouse would read as 0) and which ClickHouse parses back exactly. Rendering ``VALUES``
    literals in Python was most of a sink batch's time.

    >>> print(json_columns(["a", "b"], [["x", {"f": float("nan")}], ["y", {}]]))
    {"a":["x","y"],"b":[{"f": NaN}, {}]}
    >>> json_columns(["raw"], [[b"bytes"]]) is None
    True
    """
    parts = []
    for name, values in zip(columns, zip(*rows, strict=True), strict=True):
        try:
            text = orjson.dumps(values)
        except TypeError:
            return None
        if b"null" in text:
            text = json.dumps(values).encode()
        parts.append(orjson.dumps(name) + b":" + text)
    return "{" + b",".join(parts).decode() + "}"


def encode_rows(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows made JSON-safe for the warehouse host: bytes travel as ``{"$b64": …}``."""
    return [
        [{"$b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v for v in row]
        for row in rows
    ]


def decode_rows(rows: list[list[Any]]) -> list[list[Any]]:
    return [
        [base64.b64decode(v["$b64"]) if isinstance(v, dict) and "$b64" in v else v for v in row]
        for row in rows
    ]


class HostedWarehouse:
    """The embedded engine owned by the warehouse host process, reached over loopback HTTP
    with the token the host wrote into its state file."""

    def __init__(
        self, url: str, database: str = "headwater", *, token: str, timeout_s: float = 60.0
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, headers=headers)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            response = self._http.post(path, content=orjson.dumps(body))
        except httpx.HTTPError as error:
            raise WarehouseError(f"warehouse host at {self.url} is unavailable: {error}") from None
        payload = orjson.loads(response.content) if response.content else {}
        if response.status_code == 403:
            raise WarehouseRefused(str(payload.get("error", response.text)))
        if response.status_code != 200:
            raise WarehouseError(str(payload.get("error", response.text)))
        return payload

    def command(self, sql: str) -> None:
        self._post("/command", {"sql": sql})

    def query(self, sql: str) -> QueryResult:
        payload = self._post("/query", {"sql": sql})
        return QueryResult(payload["columns"], payload["types"], payload["rows"])

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        body: dict[str, Any] = {"database": self.database, "table": table, "columns": list(columns)}
        payload = json_columns(columns, rows)
        if payload is None:
            body["rows"] = encode_rows(rows)
        else:
            body.update(json_columns=payload, count=len(rows))
        return int(self._post("/insert", body)["inserted"])

    def close(self) -> None:
        self._http.close()


def warehouse_path(settings: HeadwaterSettings) -> Path:
    return settings.home / "warehouse"


def connect_warehouse(settings: HeadwaterSettings) -> Warehouse:
    """The warehouse for these settings: the server, the running host, or the engine itself."""
    if settings.warehouse_mode == "server":
        url = settings.clickhouse_url.get_secret_value()
        return ServerWarehouse(url, settings.clickhouse_database)
    from headwater.infra.warehouse_host import running_host

    host = running_host(settings)
    if host is not None:
        return HostedWarehouse(host.url, settings.clickhouse_database, token=host.token)
    return ChdbWarehouse(warehouse_path(settings), settings.clickhouse_database)
