"""``python -m headwater.infra.dashboard.host``: the warehouse host with the dashboard inside it.

The warehouse host already runs for the platform's whole life and owns the embedded engine, so
the dashboard, ``/metrics`` and the lag sampler run there as threads: ``headwater up`` serves the
dashboard without another process to start, track and stop.
"""

from __future__ import annotations

import threading

from headwater.core.settings import HeadwaterSettings, load_settings
from headwater.infra.dashboard.service import run_dashboard
from headwater.infra.warehouse import HostedWarehouse
from headwater.infra.warehouse_host import host_url, new_token, serve


def serve_with_dashboard(settings: HeadwaterSettings) -> None:
    """Serve the warehouse until SIGTERM; the dashboard reads it over the host's own HTTP API,
    like every other client, so the engine keeps one way in."""
    token = new_token()
    warehouse = HostedWarehouse(host_url(settings), settings.clickhouse_database, token=token)
    stop = threading.Event()
    dashboard = threading.Thread(
        target=run_dashboard, args=(settings, warehouse, stop), name="dashboard", daemon=True
    )
    dashboard.start()
    try:
        serve(settings, token)
    finally:
        stop.set()
        dashboard.join(timeout=10)
        warehouse.close()


if __name__ == "__main__":
    serve_with_dashboard(load_settings())
