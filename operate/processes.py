"""The long-running processes ``headwater up`` starts: the feature worker, the sink, the Kafka
scorer, the HTTP scoring server, the loop's agents, the retrain worker and the trial workers.

``up`` starts one supervisor per topic prefix (:mod:`headwater.operate.supervisor`, detached, its
own session); the supervisor starts the processes, restarts a crashed one with backoff, and
gives up loudly on one that keeps crashing. Where things are (:mod:`headwater.infra.supervision`):
each process's output in ``<home>/logs/<name>[.<prefix>].log`` (``headwater logs``), its pid in
``<home>/<name>[.<prefix>].pid``, the supervisor's view of all of them in
``<home>/supervisor[.<prefix>].json`` (``headwater status``). ``headwater down`` stops the
supervisors of every prefix, which stop their processes. Each process idles until it has work:
the scorers until their model has a routing, the loop and the retrain and trial workers until
records reach their topics.

>>> sorted(STREAM_PROCESSES)
['feature_worker', 'http_server', 'loop', 'retrain_worker', 'scorer', 'sink', 'trial_worker']
>>> from pathlib import Path
>>> sorted(platform_programs(HeadwaterSettings(home=Path("/tmp/x"), trial_workers=2)))[-2:]
['trial_worker', 'trial_worker-2']
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from headwater.core.errors import HeadwaterError
from headwater.core.settings import HeadwaterSettings, settings_environment
from headwater.infra.local_processes import pid_alive
from headwater.infra.supervision import (
    ProcessRecord,
    pid_file,
    prefix_suffix,
    process_log,
    read_records,
    state_file,
)
from headwater.trainers.trial_budget import machine_budget

STREAM_PROCESSES = {
    # The feature worker scores too (HEADWATER_INLINE_SCORING); the standalone scorer answers
    # what it did not: features produced elsewhere, and those from before a model was routed.
    "feature_worker": "headwater.serving.inline_worker",
    "sink": "headwater.streams.sink",
    "scorer": "headwater.serving.kafka_scorer",
    "http_server": "headwater.serving.http_server",
    "loop": "headwater.loop",
    "retrain_worker": "headwater.trainers.retrain",
    "trial_worker": "headwater.trainers.trial_worker",
}
SUPERVISOR = "headwater.operate.supervisor"

# Supervisors this process started, kept so they are reaped when stopped, not left as zombies.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def platform_programs(settings: HeadwaterSettings) -> dict[str, str]:
    """Every process the supervisor runs, by name: one of each, ``trial_workers`` trial
    workers (``trial_worker``, ``trial_worker-2``, …)."""
    programs = {n: m for n, m in STREAM_PROCESSES.items() if n != "trial_worker"}
    count = settings.trial_workers
    if count is None:
        count = machine_budget(settings).workers
    for i in range(count):
        programs["trial_worker" if i == 0 else f"trial_worker-{i + 1}"] = STREAM_PROCESSES[
            "trial_worker"
        ]
    return programs


def _module_of(name: str) -> str:
    return SUPERVISOR if name == "supervisor" else STREAM_PROCESSES[name.split("-")[0]]


def running_pid(settings: HeadwaterSettings, name: str) -> int | None:
    return _pid_of(pid_file(settings, name), name)


def _pid_of(path: Path, name: str) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    try:  # a stale pid file may name a pid reused by an unrelated process
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid  # no /proc (macOS): trust the pid file
    return pid if _module_of(name).encode() in command else None


def start_stream_processes(settings: HeadwaterSettings, timeout_s: float = 60.0) -> dict[str, int]:
    """Start the supervisor of these settings' topic prefix unless it runs; the pids of its
    processes by name once every one has started."""
    settings.home.mkdir(parents=True, exist_ok=True)
    if running_pid(settings, "supervisor") is None:
        # Processes of a supervisor that was killed: stopped, or the new one would double them.
        _stop_all(list(_live_pids(settings).values()), settings.supervisor_stop_timeout_s)
        state_file(settings).unlink(missing_ok=True)  # a dead supervisor's view is stale
        log = process_log(settings, "supervisor")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", SUPERVISOR],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=settings_environment(settings),
            )
        _CHILDREN[child.pid] = child
    wanted = platform_programs(settings)
    deadline = time.monotonic() + timeout_s
    while True:
        pids = {r.name: r.pid for r in read_records(settings) if r.pid is not None}
        if all(name in pids for name in wanted):
            return {name: pid for name, pid in pids.items() if name in wanted}
        if time.monotonic() > deadline:
            log_tail = process_log(settings, "supervisor").read_text(errors="replace")[-2000:]
            raise HeadwaterError(
                f"the supervisor did not start {sorted(set(wanted) - set(pids))} within "
                f"{timeout_s:.0f} s; its log ({process_log(settings, 'supervisor')}):\n{log_tail}"
            )
        time.sleep(0.1)


def _stop_all(pids: list[int], timeout_s: float) -> None:
    """SIGTERM to every pid at once (each shuts down in parallel), SIGKILL after ``timeout_s``
    to any still running; returns when all are gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    left = list(pids)
    while left:
        for pid in list(left):
            child = _CHILDREN.get(pid)
            if _gone(pid) or (child is not None and child.poll() is not None):
                left.remove(pid)
                if child is not None:
                    _CHILDREN.pop(pid).wait()
            elif time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    """Ended: no such process, or a zombie its parent has not reaped yet (not ours to reap)."""
    if not pid_alive(pid):
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _prefix_settings(settings: HeadwaterSettings, every_prefix: bool) -> list[HeadwaterSettings]:
    """These settings, and with ``every_prefix`` those of every prefix with a supervisor file
    under ``HEADWATER_HOME`` (a file name keeps the prefix only as far as it is file-safe, so
    each is read back through its own state file's suffix)."""
    if not every_prefix:
        return [settings]
    found = [settings]
    for path in settings.home.glob("supervisor*.json"):
        prefix = path.name.removeprefix("supervisor").removesuffix(".json").removeprefix(".")
        if prefix_suffix(settings) != (f".{prefix}" if prefix else ""):
            found.append(settings.model_copy(update={"topic_prefix": prefix}))
    return found


def stop_stream_processes(
    settings: HeadwaterSettings, timeout_s: float = 30.0, every_prefix: bool = False
) -> dict[str, bool]:
    """Stop the supervisor of these settings' topic prefix (or of every prefix under
    ``HEADWATER_HOME``) and the processes it runs; which kinds were running."""
    stopped = dict.fromkeys(STREAM_PROCESSES, False)
    for each in _prefix_settings(settings, every_prefix):
        supervisor = running_pid(each, "supervisor")
        if supervisor is not None:  # it stops its processes, each within its own timeout
            for name in _live_pids(each):
                stopped[name.split("-")[0]] = True
            _stop_all([supervisor], timeout_s + 5)
        # What is left: processes of a supervisor that was killed, or of an older `up`.
        leftovers = _live_pids(each)
        for name in leftovers:
            stopped[name.split("-")[0]] = True
        _stop_all(list(leftovers.values()), timeout_s)
        for name in [*platform_programs(each), "supervisor"]:
            pid_file(each, name).unlink(missing_ok=True)
    return stopped


def _live_pids(settings: HeadwaterSettings) -> dict[str, int]:
    names = set(platform_programs(settings)) | {r.name for r in read_records(settings)}
    pids = {name: running_pid(settings, name) for name in names}
    return {name: pid for name, pid in pids.items() if pid is not None}


def stream_process_pids(settings: HeadwaterSettings) -> dict[str, int | None]:
    """The pid of each process ``up`` runs (None: not running), the supervisor's included."""
    pids = {name: running_pid(settings, name) for name in platform_programs(settings)}
    return {**pids, "supervisor": running_pid(settings, "supervisor")}


def supervised(settings: HeadwaterSettings) -> list[ProcessRecord]:
    """The supervisor's view of its processes: state, pid, restarts, why one was given up."""
    records = read_records(settings)
    if records and running_pid(settings, "supervisor") is None:
        for record in records:
            if record.state != "stopped":
                record.note = f"the supervisor is not running (was {record.state}); run `up`"
                record.state, record.pid = "stopped", None
    return records
