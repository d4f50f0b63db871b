"""What the process supervisor records about the processes it runs, and where: ``status``, the
dashboard and ``headwater logs`` read it here, the supervisor (``headwater.operate.supervisor``)
writes it.

Under ``HEADWATER_HOME``, per topic prefix (several prefixes can share one platform):

* ``supervisor[.<prefix>].json``: one :class:`ProcessRecord` per supervised process, rewritten
  whole (write, then rename) on every change;
* ``<name>[.<prefix>].pid``: each process's pid while it runs (``supervisor`` for its own);
* ``logs/<name>[.<prefix>].log``: each process's output, appended across restarts.

>>> from pathlib import Path
>>> from headwater.core.settings import HeadwaterSettings
>>> s = HeadwaterSettings(home=Path("/tmp/hw"), topic_prefix="t-1/")
>>> str(process_log(s, "scorer")), str(state_file(s))
('/tmp/hw/logs/scorer.t-1_.log', '/tmp/hw/supervisor.t-1_.json')
>>> record = ProcessRecord("scorer", "headwater.serving.kafka_scorer", pid=7, state="running")
>>> ProcessRecord.from_dict(record.to_dict()) == record
True
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from headwater.core.settings import HeadwaterSettings

ProcessState = Literal["starting", "running", "backoff", "gave_up", "stopped"]


def prefix_suffix(settings: HeadwaterSettings) -> str:
    """``.<prefix>`` with the topic prefix made safe for a file name, or ``""`` without one."""
    prefix = "".join(c if c.isalnum() or c in "-_" else "_" for c in settings.topic_prefix)
    return f".{prefix}" if prefix else ""


def logs_dir(settings: HeadwaterSettings) -> Path:
    return settings.home / "logs"


def process_log(settings: HeadwaterSettings, name: str) -> Path:
    """Where process ``name`` of these settings' topic prefix writes its output."""
    return logs_dir(settings) / f"{name}{prefix_suffix(settings)}.log"


def pid_file(settings: HeadwaterSettings, name: str) -> Path:
    return settings.home / f"{name}{prefix_suffix(settings)}.pid"


def state_file(settings: HeadwaterSettings) -> Path:
    return settings.home / f"supervisor{prefix_suffix(settings)}.json"


@dataclass
class ProcessRecord:
    """One supervised process: what it runs, its pid, and how often it was restarted."""

    name: str
    module: str
    pid: int | None = None
    state: ProcessState = "starting"
    restarts: int = 0
    last_exit: int | None = None  # the exit status of its last run (negative: the signal)
    last_restart_ms: int = 0
    note: str = ""  # why it is in backoff or was given up on

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def write_records(path: Path, records: list[ProcessRecord]) -> None:
    """Replace the state file at once: a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps([r.to_dict() for r in records], indent=1))
    partial.replace(path)


def read_records(settings: HeadwaterSettings) -> list[ProcessRecord]:
    """The supervised processes of these settings' topic prefix (none without a supervisor)."""
    try:
        data = json.loads(state_file(settings).read_text())
    except (OSError, ValueError):
        return []
    return [ProcessRecord.from_dict(item) for item in data if isinstance(item, dict)]
