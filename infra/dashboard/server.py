"""The dashboard's HTTP server (standard library only): the page, its data as JSON, the evidence
pages of the loop timeline, and the vendored static files. Offline by design: nothing is
loaded from outside the server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from headwater.core.errors import PortInUse, WarehouseError
from headwater.infra.dashboard.data import EVIDENCE_KEYS, PanelData, load_evidence, load_panels
from headwater.infra.dashboard.page import render_evidence, render_page, render_table
from headwater.infra.warehouse import Warehouse

STATIC_DIR = Path(__file__).parent / "static"
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".md": "text/plain"}


class _Handler(BaseHTTPRequestHandler):
    warehouse: Warehouse
    refresh_s: float
    extra_panels: Callable[[], list[PanelData]]

    def _panels(self) -> list[PanelData]:
        return [*load_panels(self.warehouse), *type(self).extra_panels()]

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per poll would drown the platform's own logs."""

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, payload: Any, status: int = 200) -> None:
        self._send(status, orjson.dumps(payload), "application/json")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        try:
            if url.path == "/":
                page = render_page(self._panels(), self.refresh_s)
                self._send(200, page.encode(), "text/html; charset=utf-8")
            elif url.path == "/api/panels":
                self._json([p.to_dict() for p in self._panels()])
            elif url.path == "/api/tables":
                panels = self._panels()
                self._json({p.key: render_table(p) for p in panels if p.kind == "table"})
            elif url.path == "/evidence":
                self._evidence(parse_qs(url.query))
            elif url.path.startswith("/static/"):
                self._static(url.path.removeprefix("/static/"))
            elif url.path == "/health":
                self._json({"ok": True})
            else:
                self._json({"error": f"no page {url.path}"}, 404)
        except WarehouseError as error:
            self._json({"error": str(error)}, 503)

    def _evidence(self, query: dict[str, list[str]]) -> None:
        table, ref_id = query.get("table", [""])[0], query.get("id", [""])[0]
        if table not in EVIDENCE_KEYS:
            self._json({"error": f"no evidence table {table!r}"}, 404)
            return
        result = load_evidence(self.warehouse, table, ref_id)
        self._send(200, render_evidence(table, ref_id, result).encode(), "text/html")

    def _static(self, name: str) -> None:
        path = STATIC_DIR / name
        # Only files directly in static/: no path walks out of it.
        if "/" in name or not path.is_file() or path.suffix not in _STATIC_TYPES:
            self._json({"error": f"no static file {name}"}, 404)
            return
        self._send(200, path.read_bytes(), _STATIC_TYPES[path.suffix])


class DashboardServer:
    """The dashboard on ``host:port`` (port 0: any free port), served from a thread.

    >>> DashboardServer.__name__
    'DashboardServer'
    """

    def __init__(
        self,
        warehouse: Warehouse,
        host: str,
        port: int,
        refresh_s: float,
        extra_panels: Callable[[], list[PanelData]] | None = None,
    ) -> None:
        """``extra_panels``: panels read from elsewhere than the warehouse, after its own."""
        handler = type(
            "Handler",
            (_Handler,),
            {
                "warehouse": warehouse,
                "refresh_s": refresh_s,
                "extra_panels": staticmethod(extra_panels or list),
            },
        )
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise PortInUse(
                f"the dashboard cannot listen on {host}:{port} ({error}); "
                "set HEADWATER_DASHBOARD_PORT"
            ) from None
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.host, self.port = host, int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> DashboardServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
