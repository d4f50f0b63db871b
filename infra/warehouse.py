"""The warehouse seam: one SQL dialect (ClickHouse), three ways to reach it.

* :class:`ChdbWarehouse` — the embedded engine (chDB) on disk under ``HEADWATER_HOME``. Only one
  process may own its directory, so while the platform runs, that process is the *warehouse
  host* (:mod:`headwater.infra.warehouse_host`) and everyone else talks to it over loopback HTTP
  with
  :class:`HostedWarehouse`.
* :class:`ServerWarehouse` — a ClickHouse server through clickhouse-connect
  (``HEADWATER_CLICKHOUSE_URL``).

:func:`connect_warehouse` picks the right one from the settings.

Inserts are column-oriented (``insert_columns``: each column's values as one sequence, what the
engine reads fastest and what the sink builds); ``insert`` with rows is a thin wrapper that
transposes them.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import orjson

from headwater.core.errors import WarehouseError, WarehouseRefused
from headwater.core.redaction import redact, redacted_url, url_secrets
from headwater.core.settings import HeadwaterSettings
from headwater.infra.sql_literals import values_clause

if TYPE_CHECKING:
    import pyarrow  # type: ignore[import-untyped]

Columns = Mapping[str, Sequence[Any]]
"""A batch of rows as columns: each column's name and its values, in insert order. A column
may be an Arrow array (the sink's decoder makes them: :mod:`headwater.streams.columnar`)."""


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
        """The result of a query ClickHouse wrote as ``JSONCompact``; one it wrote in another
        format (the SQL's own FORMAT clause) is a :class:`WarehouseError` saying so."""
        if not raw:
            return cls([], [], [])
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            # A FORMAT clause in the SQL wins over the format the query asked for.
            raise WarehouseError(
                f"the query's result is not the JSONCompact it was asked for ({error}): leave "
                "the FORMAT clause out of the SQL; the rows come back as rows"
            ) from None
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

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        """Insert ``rows`` (values in the order of ``columns``): ``insert_columns`` of
        :func:`columns_of` them."""
        ...

    def insert_columns(self, table: str, columns: Columns) -> int:
        """Insert a batch given as columns (all of one length); returns the rows inserted."""
        ...

    def close(self) -> None: ...


def columns_of(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, list[Any]]:
    """Rows as columns; ValueError when a row has more or fewer values than ``names``.

    >>> columns_of(["a", "b"], [[1, "x"], [2, "y"]])
    {'a': [1, 2], 'b': ['x', 'y']}
    >>> columns_of(["a"], [])
    {'a': []}
    """
    if not rows:
        return {name: [] for name in names}
    for row in rows:
        if len(row) != len(names):
            raise ValueError(f"a row of {len(row)} values for the {len(names)} columns {names}")
    return {name: list(values) for name, values in zip(names, zip(*rows, strict=True), strict=True)}


def plain_columns(columns: Columns) -> dict[str, Sequence[Any]]:
    """Columns with each Arrow array as a list of Python values (maps as dicts), for the
    inserts that render values themselves (JSON, ``VALUES``, clickhouse-connect).

    >>> import pyarrow as pa
    >>> plain_columns({"a": pa.array([{"x": 1.5}], pa.map_(pa.string(), pa.float64())), "b": [1]})
    {'a': [{'x': 1.5}], 'b': [1]}
    """
    return {name: _plain(values) for name, values in columns.items()}


def _plain(values: Sequence[Any]) -> Sequence[Any]:
    if not _is_arrow(values):
        return values
    arrow: Any = values
    return list(arrow.to_pylist(maps_as_pydicts="strict"))


def _is_arrow(values: object) -> bool:
    """Whether a column is an Arrow array (told apart without importing pyarrow)."""
    return hasattr(values, "to_pylist") and hasattr(values, "type")


def column_count(columns: Columns) -> int:
    """The rows of a batch of columns; ValueError when its columns differ in length.

    >>> column_count({"a": [1, 2], "b": ["x", "y"]}), column_count({})
    (2, 0)
    """
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        sizes = {name: len(values) for name, values in columns.items()}
        raise ValueError(f"the columns of one insert differ in length: {sizes}")
    return lengths.pop() if lengths else 0


class ChdbWarehouse:
    """The embedded ClickHouse engine, owning ``path`` for the life of this process."""

    def __init__(self, path: Path, database: str = "headwater") -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.database = database
        self.path = path
        self._lock = threading.Lock()
        self._types: dict[tuple[str, str], dict[str, str]] = {}
        try:
            self._session = session.Session(str(path))  # type: ignore[no-untyped-call]
        except Exception as error:
            raise WarehouseError(
                f"cannot open the embedded ClickHouse engine at {path}: {error}. Another process "
                "may own it (is `headwater up` running? then queries go through it)"
            ) from error
        self.command("SET output_format_json_quote_64bit_integers=0")
        self.command(f"CREATE DATABASE IF NOT EXISTS {database}")

    def _run(self, sql: str, fmt: str = "CSV", arrow: pyarrow.Table | None = None) -> Any:
        """Run ``sql``; ``arrow``: the table it reads as ``Python(hw_arrow_batch)`` (chDB
        finds the object by that name among the locals of the frame that queries)."""
        hw_arrow_batch = arrow  # noqa: F841
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
        return self.insert_columns(table, columns_of(columns, rows))

    def insert_into(
        self, database: str, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> int:
        """Insert into a table of any database of the engine (the warehouse host serves
        clients of other databases)."""
        return self.insert_columns_into(database, table, columns_of(columns, rows))

    def insert_columns(self, table: str, columns: Columns) -> int:
        return self.insert_columns_into(self.database, table, columns)

    def insert_columns_into(self, database: str, table: str, columns: Columns) -> int:
        """Insert columns into a table of any database of the engine. They go to the engine as
        one Arrow table, typed after the table's columns: the engine reads Arrow at about twice
        the rate it parses the same values as JSON. Values Arrow cannot hold in those types go
        as ``JSONColumns``, and those JSON cannot hold (bytes) as ``VALUES`` literals."""
        count = column_count(columns)
        if not count:
            return 0
        names = ",".join(f"`{c}`" for c in columns)
        target = f"{database}.{table} ({names})"
        try:
            batch = arrow_table(columns, self._column_types(database, table, columns))
        except (TypeError, ValueError, ArithmeticError, KeyError, AttributeError):
            batch = None  # pyarrow's errors are ValueError and TypeError subclasses
        if batch is not None:
            self._run(f"INSERT INTO {target} SELECT * FROM Python(hw_arrow_batch)", arrow=batch)
            return count
        columns = plain_columns(columns)
        payload = json_columns(columns)
        if payload is None:
            rows = list(zip(*columns.values(), strict=True))
            self._run(f"INSERT INTO {target} VALUES {values_clause(rows)}")
        else:
            self.insert_json_columns(database, table, list(columns), payload)
        return count

    def _column_types(self, database: str, table: str, columns: Columns) -> dict[str, str]:
        """The ClickHouse types of a table's columns, read once (again when a column is new
        to the cache: a migration added it)."""
        types = self._types.get((database, table))
        if types is None or not types.keys() >= columns.keys():
            rows = self.query(
                "SELECT name, type FROM system.columns "
                f"WHERE database = '{database}' AND table = '{table}'"
            ).rows
            types = self._types[(database, table)] = {str(n): str(t) for n, t in rows}
        return types

    def insert_json_columns(
        self, database: str, table: str, columns: Sequence[str], payload: str
    ) -> None:
        """Insert rows given as :func:`json_columns` made them."""
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
        return self.insert_columns(table, columns_of(columns, rows))

    def insert_columns(self, table: str, columns: Columns) -> int:
        count = column_count(columns)
        if not count:
            return 0
        try:
            self._client.insert(
                table,
                [list(values) for values in plain_columns(columns).values()],
                column_names=list(columns),
                database=self.database,
                column_oriented=True,
            )
        except Exception as error:
            raise self._error(f"refused an insert into {table}", error) from None
        return count

    def close(self) -> None:
        self._client.close()


def json_columns(columns: Columns) -> str | None:
    """Columns as one ``JSONColumns`` object (the values of each column as a JSON array), or
    None when a value has no JSON form (bytes): those rows go as ``VALUES`` literals instead.

    A column is written by orjson in one C call; a column with a ``null`` in it is written again
    by the standard library, which keeps NaN and ±Infinity (orjson writes them as null, which
    ClickHouse would read as 0) and which ClickHouse parses back exactly. Rendering ``VALUES``
    literals in Python was most of a sink batch's time.

    >>> print(json_columns({"a": ["x", "y"], "b": [{"f": float("nan")}, {}]}))
    {"a":["x","y"],"b":[{"f": NaN}, {}]}
    >>> json_columns({"raw": [b"bytes"]}) is None
    True
    """
    parts = []
    for name, values in columns.items():
        try:
            text = orjson.dumps(values)
        except TypeError:
            return None
        if b"null" in text:
            text = json.dumps(values).encode()
        parts.append(orjson.dumps(name) + b":" + text)
    return "{" + b",".join(parts).decode() + "}"


# Arrow types the engine reads into the ClickHouse types the tables use (it casts integers and
# floats to the column's width; String takes bytes and text alike as binary).
_ARROW_SCALARS = {
    "String": "binary",
    "Float64": "float64",
    "Float32": "float64",
    "Bool": "bool_",
    **dict.fromkeys(("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32"), "int64"),
}


def _unwrapped(clickhouse_type: str) -> str:
    for wrapper in ("LowCardinality(", "Nullable("):
        if clickhouse_type.startswith(wrapper):
            return _unwrapped(clickhouse_type[len(wrapper) : -1])
    return clickhouse_type


def _arrow_type(clickhouse_type: str) -> pyarrow.DataType | None:
    """The Arrow type for a ClickHouse scalar or array type; None: let Arrow infer it."""
    import pyarrow as pa

    inner = _unwrapped(clickhouse_type)
    if inner.startswith("Array(") and inner.endswith(")"):
        item = _arrow_type(inner[len("Array(") : -1])
        return None if item is None else pa.list_(item)
    name = _ARROW_SCALARS.get(inner)
    return None if name is None else getattr(pa, name)()


def _arrow_array(values: Sequence[Any], clickhouse_type: str) -> pyarrow.Array:
    import pyarrow as pa

    inner = _unwrapped(clickhouse_type)
    map_item = _map_item_type(inner)
    if isinstance(values, pa.Array):  # decoded as Arrow: cast where its type is not the one
        target = _arrow_type(inner) if map_item is None else pa.map_(pa.string(), map_item)
        return values if target is None or values.type == target else values.cast(target)
    if map_item is not None:  # flattened in C: pyarrow converts dicts one by one
        chain = itertools.chain.from_iterable
        return pa.MapArray.from_arrays(
            pa.array(list(itertools.accumulate(map(len, values), initial=0)), pa.int32()),
            pa.array(list(chain(values)), pa.string()),
            pa.array(list(chain(map(dict.values, values))), map_item),
        )
    return pa.array(values, _arrow_type(inner))


def _map_item_type(inner: str) -> pyarrow.DataType | None:
    """The Arrow type of a ``Map(String, T)``'s values; None for another type or a ``T``
    without one."""
    if inner.startswith("Map(String, ") and inner.endswith(")"):
        return _arrow_type(inner[len("Map(String, ") : -1])
    return None


def arrow_table(columns: Columns, types: Mapping[str, str]) -> pyarrow.Table:
    """Columns as one Arrow table typed after their ClickHouse ``types`` (column → type name;
    Arrow infers the type of a column not there or of a type not mapped). Raises what pyarrow
    raises where a value does not fit its type: ValueError, TypeError, OverflowError.

    >>> types = {"s": "LowCardinality(String)", "m": "Map(String, Float64)", "n": "Int32"}
    >>> table = arrow_table({"s": ["a", b"b"], "m": [{"x": 1.5}, {}], "n": [1, 2]}, types)
    >>> [str(t) for t in table.schema.types]
    ['binary', 'map<string, double>', 'int64']
    >>> table.column("m").to_pylist()
    [[('x', 1.5)], []]
    >>> arrow_table({"n": ["one"]}, types)
    Traceback (most recent call last):
    ...
    pyarrow.lib.ArrowInvalid: Could not convert 'one' with type str: tried to convert to int64
    """
    import pyarrow as pa

    arrays = [_arrow_array(values, types.get(name, "")) for name, values in columns.items()]
    return pa.table(arrays, names=list(columns))


ARROW_STREAM = "application/vnd.apache.arrow.stream"
"""The content type of an insert whose columns go to the warehouse host as Arrow."""


def arrow_stream(columns: Columns) -> bytes | None:
    """Columns as one Arrow IPC stream, the lists among them typed as Arrow infers; None where
    Arrow cannot hold a list's values (they go as JSON then).

    >>> import pyarrow as pa
    >>> data = arrow_stream({"a": pa.array(["x"]), "n": [1]})
    >>> pa.ipc.open_stream(data).read_all().to_pydict()
    {'a': ['x'], 'n': [1]}
    """
    import pyarrow as pa

    try:
        table = pa.table({n: v if _is_arrow(v) else pa.array(v) for n, v in columns.items()})
    except (TypeError, ValueError, ArithmeticError):
        return None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


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

    def _post(
        self,
        path: str,
        body: dict[str, Any],
        stream: bytes = b"",
        params: dict[str, str] | None = None,
    ) -> Any:
        """``body`` as JSON, or ``stream`` (an Arrow IPC stream) where one is given."""
        headers = {"Content-Type": ARROW_STREAM} if stream else None
        content = stream or orjson.dumps(body)
        try:
            response = self._http.post(path, content=content, headers=headers, params=params)
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
        return self.insert_columns(table, columns_of(columns, rows))

    def insert_columns(self, table: str, columns: Columns) -> int:
        """Columns decoded as Arrow go as one Arrow IPC stream (the host inserts them as the
        engine does, casting to the table's types); others rendered as ``JSONColumns`` (here,
        not in the host's one process), and a batch with bytes as rows with ``{"$b64": …}``
        values."""
        count = column_count(columns)
        if not count:
            return 0
        stream = arrow_stream(columns) if any(map(_is_arrow, columns.values())) else None
        if stream is not None:
            params = {"database": self.database, "table": table}
            return int(self._post("/insert", {}, stream, params)["inserted"])
        body: dict[str, Any] = {"database": self.database, "table": table, "columns": list(columns)}
        columns = plain_columns(columns)
        payload = json_columns(columns)
        if payload is None:
            body["rows"] = encode_rows(list(zip(*columns.values(), strict=True)))
        else:
            body.update(json_columns=payload, count=count)
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
