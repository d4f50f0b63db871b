"""Running the stream workers as real processes in tests, and reading what they produced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import make_codec, read_topic
from headwater.infra.kafka_clients import topic_states
from headwater.schemas.domain import load_domain
from tests.conftest import settings_env

REPO = Path(__file__).resolve().parents[2]


def worker_env(settings: HeadwaterSettings, **extra: str) -> dict[str, str]:
    env = settings_env(settings)
    env["HEADWATER_TOPIC_PREFIX"] = settings.topic_prefix
    env["HEADWATER_TOPIC_PARTITIONS"] = str(settings.topic_partitions)
    if settings.event_schema_file:
        env["HEADWATER_EVENT_SCHEMA_FILE"] = settings.event_schema_file
    env["HEADWATER_FEATURES"] = settings.features
    # After the caller's path: a worktree run with PYTHONPATH=build/layout keeps its own code.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH", ""), str(REPO)]))
    env.update(extra)
    return env


def start_worker(
    settings: HeadwaterSettings, module: str, log: Path, **extra: str
) -> subprocess.Popen[bytes]:
    """``python -m <module>`` with the test platform's settings (and ``extra`` variables),
    logging to ``log``."""
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", module],
            env=worker_env(settings, **extra),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def stop_worker(process: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    """SIGKILL (a crash) or SIGTERM (a clean stop), then reap."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def end_offsets(settings: HeadwaterSettings, topic: str) -> int:
    states = topic_states(settings, [settings.topic(topic)])
    return states[0].records if states else 0


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tail}")


def decoded(settings: HeadwaterSettings, topic: str, group: str) -> list[dict[str, Any]]:
    """Every record of a topic, decoded, with ``_partition`` and ``_offset``."""
    codec = make_codec(settings)
    load_domain(codec.catalog, settings.event_schema_file)
    out = []
    for record in read_topic(settings, topic, group=group, idle_timeout_s=3.0):
        _, value = codec.decode(record.value)
        value["_partition"], value["_offset"] = record.partition, record.offset
        out.append(value)
    return out
