"""The dashboard service: serves the dashboard and ``/metrics``, and every refresh interval
samples consumer lag from Kafka into the warehouse (``consumer_lag``) and the lag gauges.

With the embedded engine it runs inside the warehouse host (:mod:`headwater.infra.dashboard.host`),
so
``headwater up`` serves it without another process; with a ClickHouse server ``up`` starts it
in the background (:func:`start_dashboard_process`); ``headwater dashboard`` runs it in the
foreground, which is how ``docker-compose.yml`` runs it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from headwater.core.errors import HeadwaterError, PortInUse, WarehouseError
from headwater.core.logs import configure_logging
from headwater.core.settings import HeadwaterSettings
from headwater.infra.consumer_lag import record_lag, sample_lag
from headwater.infra.dashboard.data import processes_panel
from headwater.infra.dashboard.server import DashboardServer
from headwater.infra.local_processes import pid_alive
from headwater.infra.metrics import METRICS, serve_metrics
from headwater.infra.warehouse import Warehouse, connect_warehouse
from headwater.infra.warehouse_host import running_host_url
from headwater.infra.warehouse_metrics import WarehouseCollector

log = logging.getLogger("headwater.dashboard")


def dashboard_file(settings: HeadwaterSettings) -> Path:
    return settings.home / "dashboard.json"


def running_dashboard_url(settings: HeadwaterSettings) -> str | None:
    """The URL of this state directory's dashboard process, if it runs and answers."""
    try:
        info = json.loads(dashboard_file(settings).read_text())
    except (OSError, ValueError):
        return None
    if not pid_alive(int(info.get("pid", 0))):
        return None
    try:
        httpx.get(f"{info['url']}health", timeout=2.0).raise_for_status()
    except httpx.HTTPError:
        return None
    return str(info["url"])


def running_dashboard_pid(settings: HeadwaterSettings) -> int | None:
    try:
        pid = int(json.loads(dashboard_file(settings).read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None
    return pid if pid_alive(pid) else None


def open_warehouse(settings: HeadwaterSettings) -> Warehouse:
    """The warehouse to read; in embedded mode only through the warehouse host, never by
    opening the engine's directory (that would lock the host out)."""
    if settings.warehouse_mode == "embedded" and running_host_url(settings) is None:
        raise WarehouseError(
            f"no warehouse host runs for {settings.home}; start the platform with `headwater up`"
        )
    return connect_warehouse(settings)


def sample_once(settings: HeadwaterSettings, warehouse: Warehouse) -> int:
    """One lag snapshot into the warehouse and the gauges; returns the partitions sampled."""
    samples = sample_lag(settings)
    for s in samples:
        METRICS.consumer_lag.labels(
            group=s.group_id, topic=s.topic, partition=str(s.partition)
        ).set(s.lag)
    record_lag(warehouse, samples)
    return len(samples)


def _sample_until(settings: HeadwaterSettings, warehouse: Warehouse, stop: threading.Event) -> None:
    while not stop.wait(settings.dashboard_refresh_s):
        try:
            sample_once(settings, warehouse)
        except Exception as error:
            # Kafka or the warehouse is away for a moment: the page shows what is there.
            if not stop.is_set():
                log.warning("lag sampling failed: %s", error)


def run_dashboard(settings: HeadwaterSettings, warehouse: Warehouse, stop: threading.Event) -> None:
    """Serve the dashboard and /metrics and sample lag until ``stop`` is set. A taken port is
    logged, not raised: this runs inside the warehouse host, which must stay up regardless."""
    try:
        server: DashboardServer | None = DashboardServer(
            warehouse,
            settings.bind_host,
            settings.dashboard_port,
            settings.dashboard_refresh_s,
            extra_panels=lambda: [processes_panel(settings.home)],
        ).start()
    except PortInUse as error:
        log.warning("no dashboard: %s", error)
        server = None
    metrics = None
    collector = WarehouseCollector(warehouse)
    if settings.metrics_port:
        METRICS.registry.register(collector)
        try:
            metrics = serve_metrics(settings, "dashboard")
        except PortInUse as error:
            log.warning("no /metrics for the dashboard: %s", error)
    if server is not None:
        dashboard_file(settings).write_text(json.dumps({"pid": os.getpid(), "url": server.url}))
        log.info("dashboard on %s", server.url)
    try:
        _sample_until(settings, warehouse, stop)
    finally:
        if server is not None:
            dashboard_file(settings).unlink(missing_ok=True)
            server.close()
        if metrics is not None:
            metrics.close()
        if settings.metrics_port:
            METRICS.registry.unregister(collector)


def start_dashboard_process(
    settings: HeadwaterSettings, timeout_s: float = 30.0
) -> subprocess.Popen[bytes] | None:
    """Start ``python -m headwater.infra.dashboard`` in the background and wait until it answers;
    None
    when one already runs. The caller keeps the process object to reap it after stopping it."""
    if running_dashboard_pid(settings) is not None:
        return None
    settings.home.mkdir(parents=True, exist_ok=True)
    with (settings.home / "dashboard.log").open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "headwater.infra.dashboard"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "HEADWATER_HOME": str(settings.home)},
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (settings.home / "dashboard.log").read_text(errors="replace")[-2000:]
            raise HeadwaterError(f"the dashboard exited with {process.returncode}:\n{tail}")
        if running_dashboard_url(settings) is not None:
            return process
        time.sleep(0.2)
    process.terminate()
    process.wait()
    raise HeadwaterError(f"the dashboard did not answer within {timeout_s:.0f} s")


def main(settings: HeadwaterSettings) -> None:
    """Foreground entry: serve until SIGTERM or SIGINT."""
    configure_logging("dashboard")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    warehouse = open_warehouse(settings)
    try:
        run_dashboard(settings, warehouse, stop)
    finally:
        warehouse.close()
