"""The warehouse host: the one process that owns the embedded ClickHouse engine while the
platform runs, serving the :class:`~headwater.infra.warehouse.Warehouse` calls of every other
process over
HTTP on 127.0.0.1 (chDB lets a single process open its directory).

Run by ``headwater up`` as ``python -m headwater.infra.warehouse_host``; it applies the migrations,
writes
its pid and address under ``HEADWATER_HOME`` and serves until SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson

from headwater.core.errors import WarehouseError
from headwater.core.settings import HeadwaterSettings, load_settings
from headwater.infra.local_processes import pid_alive
from headwater.infra.migrations import apply_migrations
from headwater.infra.warehouse import ChdbWarehouse, decode_rows, warehouse_path


def host_file(settings: HeadwaterSettings) -> Path:
    return settings.home / "warehouse-host.json"


def running_host_url(settings: HeadwaterSettings) -> str | None:
    """The URL of the live warehouse host for this state directory, if one runs."""
    try:
        info = json.loads(host_file(settings).read_text())
    except (OSError, ValueError):
        return None
    if not pid_alive(int(info.get("pid", 0))) or int(info["pid"]) == os.getpid():
        return None
    url = str(info["url"])
    try:
        httpx.get(f"{url}/health", timeout=2.0).raise_for_status()
    except httpx.HTTPError:
        return None
    return url


def running_host_pid(settings: HeadwaterSettings) -> int | None:
    try:
        pid = int(json.loads(host_file(settings).read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None
    return pid if pid_alive(pid) else None


class _Handler(BaseHTTPRequestHandler):
    warehouse: ChdbWarehouse

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the platform logs what matters itself."""

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._reply(200, {"ok": True, "database": self.warehouse.database})
        else:
            self._reply(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        try:
            body = orjson.loads(self.rfile.read(length))
            if self.path == "/query":
                result = self.warehouse.query(body["sql"])
                self._reply(
                    200, {"columns": result.columns, "types": result.types, "rows": result.rows}
                )
            elif self.path == "/command":
                self.warehouse.command(body["sql"])
                self._reply(200, {})
            elif self.path == "/insert":
                database = body.get("database") or self.warehouse.database
                if "json_columns" in body:  # rendered by the client (HostedWarehouse.insert)
                    self.warehouse.insert_json_columns(
                        database, body["table"], body["columns"], str(body["json_columns"])
                    )
                    inserted = int(body["count"])
                else:
                    rows = decode_rows(body["rows"])
                    inserted = self.warehouse.insert_into(
                        database, body["table"], body["columns"], rows
                    )
                self._reply(200, {"inserted": inserted})
            else:
                self._reply(404, {"error": f"no route {self.path}"})
        except WarehouseError as error:
            self._reply(400, {"error": str(error)})
        except (KeyError, ValueError, TypeError) as error:
            self._reply(400, {"error": f"bad warehouse request to {self.path}: {error!r}"})


def serve(settings: HeadwaterSettings) -> None:
    """Own the engine and serve it until SIGTERM or SIGINT."""
    warehouse = ChdbWarehouse(warehouse_path(settings), settings.clickhouse_database)
    apply_migrations(warehouse)
    handler = type("Handler", (_Handler,), {"warehouse": warehouse})
    server = ThreadingHTTPServer((settings.bind_host, settings.warehouse_host_port), handler)
    server.daemon_threads = True
    url = f"http://{settings.bind_host}:{settings.warehouse_host_port}"
    host_file(settings).write_text(json.dumps({"pid": os.getpid(), "url": url}))

    def _stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        host_file(settings).unlink(missing_ok=True)
        warehouse.close()


if __name__ == "__main__":
    serve(load_settings())
