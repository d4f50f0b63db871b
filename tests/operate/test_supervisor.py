"""The supervisor on real child processes (no broker needed): a crashing process is restarted
with backoff, each restart recorded, and after repeated crashes it is given up on, loudly; the
dashboard shows what it recorded."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from headwater.core.settings import HeadwaterSettings
from headwater.infra.dashboard.data import processes_panel
from headwater.infra.dashboard.server import DashboardServer
from headwater.infra.metrics import METRICS
from headwater.infra.supervision import (
    ProcessRecord,
    process_log,
    read_records,
    state_file,
    write_records,
)
from headwater.infra.warehouse import ChdbWarehouse
from headwater.operate.processes import _prefix_settings
from headwater.operate.supervisor import Supervisor


def _settings(tmp_path: Path) -> HeadwaterSettings:
    return HeadwaterSettings(
        home=tmp_path,
        topic_prefix="sv-",
        supervisor_backoff_s=0.1,
        supervisor_backoff_max_s=0.4,
        supervisor_max_crashes=3,
        supervisor_crash_window_s=60.0,
        supervisor_stop_timeout_s=5.0,
    )


def _run_until(supervisor: Supervisor, done: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, [r.to_dict() for r in supervisor.records]
        supervisor.step()
        time.sleep(0.05)


def test_a_process_that_keeps_crashing_is_restarted_then_given_up_on(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    # A module that does not exist: `python -m` exits with status 1 at once, every time.
    supervisor = Supervisor(settings, {"crasher": "headwater.no_such_module"})
    for child in supervisor._all:
        supervisor._start(child)
    _run_until(supervisor, lambda: supervisor.records[0].state == "gave_up")
    record = supervisor.records[0]
    assert (record.restarts, record.last_exit, record.pid) == (2, 1, None)
    assert "crashed 3 times within 60 s" in record.note
    assert METRICS.process_given_up.labels(process="crasher")._value.get() == 1
    assert METRICS.process_restarts.labels(process="crasher")._value.get() >= 2
    log = process_log(settings, "crasher").read_text()
    assert log.count("No module named headwater.no_such_module") == 3
    assert "restarted: pid" in log and "GIVEN UP" in log
    supervisor._stop_children()
    assert [r.state for r in read_records(settings)] == ["stopped"]
    assert state_file(settings).exists()


def test_a_killed_process_comes_back_and_a_stop_stops_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    # A process that would run for a minute: killed, it is restarted after the backoff.
    supervisor = Supervisor(settings, {"sleeper": "tests.operate.sleeper"})
    for child in supervisor._all:
        supervisor._start(child)
    first = supervisor._all[0].process
    assert first is not None
    first.kill()
    _run_until(supervisor, lambda: supervisor.records[0].restarts == 1)
    record = supervisor.records[0]
    assert record.state == "running" and record.pid not in (None, first.pid)
    assert record.last_exit == -9
    supervisor._stop_children()
    assert supervisor.records[0].state == "stopped"


def test_the_dashboard_shows_restarts_and_processes_given_up(
    tmp_path: Path, warehouse: ChdbWarehouse
) -> None:
    settings = _settings(tmp_path)
    write_records(
        state_file(settings),
        [
            ProcessRecord("scorer", "headwater.serving.kafka_scorer", 41, "running", restarts=2),
            ProcessRecord("sink", "headwater.streams.sink", None, "gave_up", 4, 1, 0, "crashed"),
        ],
    )
    server = DashboardServer(
        warehouse, "127.0.0.1", 0, 1.0, extra_panels=lambda: [processes_panel(tmp_path)]
    ).start()
    try:
        tables = httpx.get(server.url + "api/tables", timeout=10).json()
        html = tables["processes"]
        assert "<td>scorer</td><td>running</td><td>41</td><td>2</td>" in html
        assert "<td>sink</td><td>gave_up</td><td></td><td>4</td><td>1</td>" in html
        assert "Supervised processes" in httpx.get(server.url, timeout=10).text
    finally:
        server.close()


def test_down_finds_the_supervisor_of_every_prefix(tmp_path: Path) -> None:
    for name in ("supervisor.json", "supervisor.a-.json", "supervisor.b-.json"):
        (tmp_path / name).write_text("[]")
    settings = HeadwaterSettings(home=tmp_path, topic_prefix="b-")
    found = _prefix_settings(settings, every_prefix=True)
    assert sorted(s.topic_prefix for s in found) == ["", "a-", "b-"]
    assert _prefix_settings(settings, every_prefix=False) == [settings]
