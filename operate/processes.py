"""The long-running processes ``headwater up`` starts: the feature worker, the sink, the Kafka
scorer, the HTTP scoring server, the loop's agents and the retrain worker.

Each runs detached (its own session, log under ``HEADWATER_HOME``), records its pid in
``<home>/<name>[.<topic prefix>].pid`` — several prefixes can share one platform — and is
stopped by ``headwater down`` (SIGTERM to all, then SIGKILL to any left), which stops those of
every prefix. Each idles until it has work: the scorers until their model has a routing, the
loop and the retrain worker until events reach their topics. ``headwater demo`` runs workers
of its own on topics (and consumer groups) of its own prefix, so the two never share a group.

>>> sorted(STREAM_PROCESSES)
['feature_worker', 'http_server', 'loop', 'retrain_worker', 'scorer', 'sink']
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydantic import SecretStr

from headwater.core.settings import ENV_PREFIX, HeadwaterSettings
from headwater.infra.local_processes import pid_alive

STREAM_PROCESSES = {
    "feature_worker": "headwater.streams.worker",
    "sink": "headwater.streams.sink",
    "scorer": "headwater.serving.kafka_scorer",
    "http_server": "headwater.serving.http_server",
    "loop": "headwater.loop",
    "retrain_worker": "headwater.trainers.retrain",
}

# Children this process started, kept so they are reaped when stopped, not left as zombies.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def settings_environment(settings: HeadwaterSettings) -> dict[str, str]:
    """The environment that makes a child process load exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for name in HeadwaterSettings.model_fields:
        value = getattr(settings, name)
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        env[f"{ENV_PREFIX}{name.upper()}"] = text
    return env


def pid_file(settings: HeadwaterSettings, name: str) -> Path:
    prefix = "".join(c if c.isalnum() or c in "-_" else "_" for c in settings.topic_prefix)
    return settings.home / (f"{name}.{prefix}.pid" if prefix else f"{name}.pid")


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
    return pid if STREAM_PROCESSES[name].encode() in command else None


def start_stream_processes(settings: HeadwaterSettings) -> dict[str, int]:
    """Start every stream process that is not running yet; their pids by name."""
    settings.home.mkdir(parents=True, exist_ok=True)
    env = settings_environment(settings)
    pids = {}
    for name, module in STREAM_PROCESSES.items():
        pid = running_pid(settings, name)
        if pid is None:
            with (settings.home / f"{name}.log").open("ab") as log:
                child = subprocess.Popen(
                    [sys.executable, "-m", module],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env=env,
                )
            _CHILDREN[child.pid] = child
            pid_file(settings, name).write_text(str(child.pid))
            pid = child.pid
        pids[name] = pid
    return pids


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
            if not pid_alive(pid) or (child is not None and child.poll() is not None):
                left.remove(pid)
                if child is not None:
                    _CHILDREN.pop(pid).wait()
            elif time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def stop_stream_processes(
    settings: HeadwaterSettings, timeout_s: float = 30.0, every_prefix: bool = False
) -> dict[str, bool]:
    """Stop the processes of these settings' topic prefix (or of every prefix under
    ``HEADWATER_HOME``); which kinds were stopped."""
    stopped = {}
    pids: list[int] = []
    for name in STREAM_PROCESSES:
        own = pid_file(settings, name)
        paths = set(settings.home.glob(f"{name}*.pid")) | {own} if every_prefix else {own}
        stopped[name] = False
        for path in paths:
            pid = _pid_of(path, name)
            if pid is not None:
                pids.append(pid)
                stopped[name] = True
            path.unlink(missing_ok=True)
    _stop_all(pids, timeout_s)
    return stopped


def stream_process_pids(settings: HeadwaterSettings) -> dict[str, int | None]:
    return {name: running_pid(settings, name) for name in STREAM_PROCESSES}
