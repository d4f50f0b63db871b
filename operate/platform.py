"""Bringing the platform up and down on one machine, and reporting its state.

``up`` starts the local Apache Kafka (unless an external cluster is configured), creates the
topics, and starts the warehouse host that owns the embedded ClickHouse engine (unless a
ClickHouse server is configured), which applies the migrations. ``down`` stops what ``up``
started and waits until no process is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from headwater.core.errors import HeadwaterError, PortInUse, SchemaError, WarehouseError
from headwater.core.settings import HeadwaterSettings
from headwater.infra.dashboard.service import (
    running_dashboard_pid,
    running_dashboard_url,
    start_dashboard_process,
)
from headwater.infra.event_bus import make_codec
from headwater.infra.kafka_clients import cluster_metadata, ensure_topics, topic_states
from headwater.infra.local_kafka import LocalKafka
from headwater.infra.local_processes import pid_alive, port_is_free
from headwater.infra.migrations import apply_migrations, table_for_topic
from headwater.infra.warehouse import Warehouse, connect_warehouse
from headwater.infra.warehouse_host import (
    LOOPBACK,
    host_file,
    running_host_pid,
    running_host_url,
)
from headwater.operate.operator_summary import operator_summary
from headwater.operate.processes import (
    start_stream_processes,
    stop_stream_processes,
    stream_process_pids,
    supervised,
)
from headwater.schemas.domain import load_domain
from headwater.schemas.topics import TOPICS
from headwater.streams.feature_module import load_feature_module
from headwater.streams.pipeline import FeaturePipeline

# Hosts this process started, kept until stopped so their Popen objects are reaped, not leaked.
_HOSTS: dict[int, subprocess.Popen[bytes]] = {}


def start_warehouse_host(settings: HeadwaterSettings, timeout_s: float = 60.0) -> int:
    """Start the process that owns the embedded engine, or find it running."""
    pid = running_host_pid(settings)
    if pid is not None:
        return pid
    if not port_is_free(settings.warehouse_host_port, LOOPBACK):
        raise PortInUse(
            f"port {settings.warehouse_host_port} on {LOOPBACK} is in use by another "
            "process; stop it or set HEADWATER_WAREHOUSE_HOST_PORT"
        )
    settings.home.mkdir(parents=True, exist_ok=True)
    log = (settings.home / "warehouse-host.log").open("ab")
    env = {**os.environ, "HEADWATER_HOME": str(settings.home)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "headwater.infra.dashboard.host",
        ],  # the host, serving the dashboard too
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    _HOSTS[process.pid] = process
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (settings.home / "warehouse-host.log").read_text(errors="replace")[-2000:]
            raise WarehouseError(f"the warehouse host exited with {process.returncode}:\n{tail}")
        if running_host_url(settings) is not None:
            return process.pid
        time.sleep(0.2)
    process.terminate()
    raise WarehouseError(f"the warehouse host did not answer within {timeout_s:.0f} s")


def stop_pid(pid: int, timeout_s: float = 20.0) -> None:
    """SIGTERM, wait, then SIGKILL: the process is gone when this returns."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    child = _HOSTS.pop(pid, None)
    if child is not None:
        child.wait()


@dataclass
class PlatformReport:
    """What ``up`` and ``status`` print."""

    kafka: dict[str, Any]
    topics: list[dict[str, Any]] = field(default_factory=list)
    warehouse: dict[str, Any] = field(default_factory=dict)
    tables: list[dict[str, Any]] = field(default_factory=list)
    processes: dict[str, int | None] = field(default_factory=dict)
    # Lag, routing, open alarms and the loop's last decisions (headwater.operate.operator_summary).
    operations: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def check_application(settings: HeadwaterSettings) -> None:
    """Load the application's event schema and feature module and check them against each
    other, as the feature worker will: a wrong ``HEADWATER_EVENT_SCHEMA_FILE`` or
    ``HEADWATER_FEATURES`` fails ``up`` at once, naming it. Unchecked, ``up`` reported success
    and started processes that failed on it and were restarted until the supervisor gave up."""
    codec = make_codec(settings)
    try:
        domain = load_domain(codec.catalog, settings.event_schema_file)
    except SchemaError as error:
        raise SchemaError(f"HEADWATER_EVENT_SCHEMA_FILE: {error}") from None
    FeaturePipeline(domain, codec, load_feature_module(settings.features), settings.topic_prefix)


def up(settings: HeadwaterSettings, processes: bool = True) -> PlatformReport:
    """Topics and migrations; with ``processes``, also the platform's local processes (compose
    runs each of those as a service of its own and calls this with ``processes=False``). The
    application's schema and features are checked first (:func:`check_application`)."""
    check_application(settings)
    if settings.kafka_mode == "local":
        LocalKafka(settings).start()
    ensure_topics(settings)
    if settings.warehouse_mode == "embedded":
        start_warehouse_host(settings)
    else:
        warehouse = connect_warehouse(settings)
        try:
            apply_migrations(warehouse)
        finally:
            warehouse.close()
    if not processes:
        return status(settings)
    start_stream_processes(settings)  # the supervisor and its processes (operate.processes)
    if settings.warehouse_mode == "server":
        # No warehouse host to serve the dashboard with a server: it gets a process of its own.
        child = start_dashboard_process(settings)
        if child is not None:
            _HOSTS[child.pid] = child
    return status(settings)


def down(settings: HeadwaterSettings) -> dict[str, bool]:
    stopped = {"warehouse_host": False, "kafka": False}
    # Before the broker and warehouse they use; those of every topic prefix on this platform.
    stopped.update(stop_stream_processes(settings, every_prefix=True))
    dashboard = running_dashboard_pid(settings)
    if dashboard is not None and dashboard != running_host_pid(settings):
        stop_pid(dashboard)  # its own process (ClickHouse server mode); else it's the host's
        stopped["dashboard"] = True
    host = running_host_pid(settings)
    if host is not None:
        stop_pid(host)
        host_file(settings).unlink(missing_ok=True)
        stopped["warehouse_host"] = True
    if settings.kafka_mode == "local":
        stopped["kafka"] = LocalKafka(settings).stop()
    return stopped


def table_counts(warehouse: Warehouse) -> list[dict[str, Any]]:
    db = warehouse.database
    rows = []
    for topic in TOPICS:
        table = table_for_topic(topic)
        try:
            count = int(warehouse.query(f"SELECT count() FROM {db}.{table} FINAL").scalar())
        except WarehouseError:
            count = -1  # the table is missing: migrations not applied
        rows.append({"table": table, "topic": topic, "rows": count})
    return rows


def status(settings: HeadwaterSettings) -> PlatformReport:
    """Broker, topics with partitions and end offsets, warehouse tables with row counts."""
    kafka: dict[str, Any] = {"mode": settings.kafka_mode, "bootstrap": settings.bootstrap_servers}
    report = PlatformReport(kafka=kafka)
    try:
        metadata = cluster_metadata(settings)
        kafka.update(reachable=True, brokers=len(metadata.brokers))
        names = [settings.topic(t) for t in TOPICS]
        report.topics = [
            {
                "topic": s.name,
                "partitions": s.partitions,
                "end_offsets": s.end_offsets,
                "records": s.records,
            }
            for s in topic_states(settings, names)
        ]
    except HeadwaterError as error:
        kafka.update(reachable=False, error=str(error))
    report.warehouse = {"mode": settings.warehouse_mode, "database": settings.clickhouse_database}
    try:
        warehouse = connect_warehouse(settings)
        try:
            report.warehouse["reachable"] = True
            report.tables = table_counts(warehouse)
            summary = operator_summary(
                settings, warehouse, running_dashboard_url(settings), bool(kafka.get("reachable"))
            )
            report.operations = asdict(summary)
        finally:
            warehouse.close()
    except HeadwaterError as error:
        report.warehouse.update(reachable=False, error=str(error))
    report.processes = {
        "kafka": LocalKafka(settings).running_pid() if settings.kafka_mode == "local" else None,
        "warehouse_host": running_host_pid(settings),
        **stream_process_pids(settings),
    }
    if not report.operations:  # no warehouse: the supervisor's view still shows
        report.operations = {"processes": [r.to_dict() for r in supervised(settings)]}
    return report
