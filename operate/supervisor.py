"""The one supervisor of the platform's processes: ``headwater up`` starts it detached
(``python -m headwater.operate.supervisor``), and it starts, watches and restarts the rest.

A process that exits while the supervisor is not stopping has crashed: it is started again after
an exponential backoff (``HEADWATER_SUPERVISOR_BACKOFF_S``, doubling up to
``HEADWATER_SUPERVISOR_BACKOFF_MAX_S``). After ``HEADWATER_SUPERVISOR_MAX_CRASHES`` crashes within
``HEADWATER_SUPERVISOR_CRASH_WINDOW_S`` it is given up on, loudly: an ERROR line in the
supervisor's log and the process's own, ``gave_up`` in ``headwater status`` and the dashboard, and
``headwater_process_given_up`` on the supervisor's ``/metrics``. Every restart is counted there
(``headwater_process_restarts_total``) and in the state file (:mod:`headwater.infra.supervision`).

On SIGTERM it stops every process (SIGTERM, then SIGKILL after ``--stop-timeout``) and exits.

>>> crashes = CrashHistory(backoff_s=1.0, backoff_max_s=5.0, max_crashes=4, window_s=60.0)
>>> [crashes.crashed(now) for now in (0.0, 1.0, 2.0, 3.0)]
[1.0, 2.0, 4.0, None]
>>> CrashHistory(1.0, 5.0, 4, 60.0).crashed(0.0), crashes.crashed(100.0)  # the window passed
(1.0, 1.0)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from headwater.core.logs import configure_logging
from headwater.core.settings import HeadwaterSettings, load_settings, settings_environment
from headwater.infra.metrics import METRICS, serve_process_metrics
from headwater.infra.supervision import (
    ProcessRecord,
    pid_file,
    process_log,
    state_file,
    write_records,
)
from headwater.operate.processes import platform_programs

log = logging.getLogger("headwater.operate.supervisor")

TICK_S = 0.2


@dataclass
class CrashHistory:
    """Crash times of one process: :meth:`crashed` says how long to wait before restarting it,
    or None to give up (``max_crashes`` within ``window_s``)."""

    backoff_s: float
    backoff_max_s: float
    max_crashes: int
    window_s: float
    _times: deque[float] = field(default_factory=deque, repr=False)

    def crashed(self, now: float) -> float | None:
        self._times.append(now)
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        recent = len(self._times)
        if recent >= self.max_crashes:
            return None
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** (recent - 1)))


@dataclass
class _Child:
    record: ProcessRecord
    argv: list[str]
    crashes: CrashHistory
    process: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None


class Supervisor:
    """Runs ``programs`` (name → module run with ``python -m``) until :meth:`stop`."""

    def __init__(self, settings: HeadwaterSettings, programs: dict[str, str]) -> None:
        self.settings = settings
        self._env = settings_environment(settings)
        self._children = {
            name: _Child(
                ProcessRecord(name, module),
                [sys.executable, "-m", module],
                CrashHistory(
                    settings.supervisor_backoff_s,
                    settings.supervisor_backoff_max_s,
                    settings.supervisor_max_crashes,
                    settings.supervisor_crash_window_s,
                ),
            )
            for name, module in programs.items()
        }
        self._stopping = False

    @property
    def records(self) -> list[ProcessRecord]:
        return [child.record for child in self._children.values()]

    def _save(self) -> None:
        write_records(state_file(self.settings), self.records)

    def _start(self, child: _Child) -> None:
        name = child.record.name
        path = process_log(self.settings, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as out:  # the child keeps its own descriptor
            child.process = subprocess.Popen(
                child.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env,
            )
        pid_file(self.settings, name).write_text(str(child.process.pid))
        child.record.pid, child.record.state, child.record.note = child.process.pid, "running", ""
        child.restart_at = None

    def _note(self, name: str, level: int, message: str) -> None:
        """A line in the supervisor's log and in the process's own (``headwater logs NAME``)."""
        log.log(level, "%s: %s", name, message)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        line = f"{stamp} {logging.getLevelName(level)} supervisor: {name} {message}\n"
        with process_log(self.settings, name).open("a") as out:
            out.write(line)

    def _exited(self, child: _Child, status: int) -> None:
        record = child.record
        record.last_exit, record.pid = status, None
        pid_file(self.settings, record.name).unlink(missing_ok=True)
        delay = child.crashes.crashed(time.monotonic())
        window = self.settings.supervisor_crash_window_s
        if delay is None:
            record.state = "gave_up"
            record.note = (
                f"crashed {self.settings.supervisor_max_crashes} times within {window:.0f} s "
                f"(last exit status {status}); not restarted: see its log, then `headwater up`"
            )
            METRICS.process_given_up.labels(process=record.name).set(1)
            self._note(record.name, logging.ERROR, f"GIVEN UP: {record.note}")
            return
        record.state, record.note = "backoff", f"exited with {status}; restarting in {delay:g} s"
        child.restart_at = time.monotonic() + delay
        self._note(record.name, logging.WARNING, record.note)

    def step(self) -> bool:
        """Reap exits, restart what is due; whether anything changed."""
        changed = False
        now = time.monotonic()
        for child in self._children.values():
            process = child.process
            if process is not None and process.poll() is not None:
                child.process = None
                self._exited(child, process.returncode)
                changed = True
            if child.restart_at is not None and now >= child.restart_at:
                child.record.restarts += 1
                child.record.last_restart_ms = int(time.time() * 1000)
                METRICS.process_restarts.labels(process=child.record.name).inc()
                self._start(child)
                self._note(child.record.name, logging.WARNING, f"restarted: pid {child.record.pid}")
                changed = True
        return changed

    def run(self) -> None:
        for child in self._children.values():
            self._start(child)
            METRICS.process_restarts.labels(process=child.record.name)  # 0 until one happens
            METRICS.process_given_up.labels(process=child.record.name).set(0)
        self._save()
        log.info("supervising %s", ", ".join(f"{c.record.name}={c.record.pid}" for c in self._all))
        while not self._stopping:
            if self.step():
                self._save()
            time.sleep(TICK_S)
        self._stop_children()

    @property
    def _all(self) -> list[_Child]:
        return list(self._children.values())

    def stop(self, *_: object) -> None:
        self._stopping = True

    def _stop_children(self, timeout_s: float | None = None) -> None:
        wait_s = self.settings.supervisor_stop_timeout_s if timeout_s is None else timeout_s
        running = [c for c in self._all if c.process is not None and c.process.poll() is None]
        for child in running:
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.terminate()
        deadline = time.monotonic() + wait_s
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killed", child.record.name, wait_s)
                child.process.kill()
                child.process.wait()
        for child in self._all:
            child.record.state, child.record.pid, child.process = "stopped", None, None
            child.restart_at = None
            pid_file(self.settings, child.record.name).unlink(missing_ok=True)
        self._save()
        log.info("every process stopped")


def run_supervisor(settings: HeadwaterSettings, programs: dict[str, str]) -> None:
    supervisor = Supervisor(settings, programs)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        supervisor.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    own = pid_file(settings, "supervisor")
    own.write_text(str(os.getpid()))
    try:
        supervisor.run()
    finally:
        own.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m headwater.operate.supervisor")
    parser.parse_args(argv)
    configure_logging("supervisor")
    settings = load_settings()
    serve_process_metrics(settings, "supervisor")
    run_supervisor(settings, platform_programs(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
