"""Experiment tracking: every run and trial is a sequence of events on ``runs``.

:class:`RunTracker` is an :class:`~headwater.trainers.training.EpochListener`: it publishes
``started``
(parameters, lineage, code revision), one ``running`` event per epoch (the metrics), and
``completed`` / ``failed`` / ``pruned`` with the final metrics and artifact sha256s. The sink
copies ``runs`` into the warehouse; :class:`WarehouseRecorder` writes the same rows directly
for processes that already hold a warehouse (the rows are idempotent: the table replaces a
row with the same run, time, status and step).

>>> from headwater.trainers.registry import MemoryPublisher
>>> publisher = MemoryPublisher()
>>> tracker = RunTracker(publisher, "run-1", "demo", clock=iter(range(10)).__next__)
>>> tracker.start(); tracker.on_epoch(1, {"valid_loss": 0.5}); tracker.complete({}, {})
True
>>> [(e.status, e.step) for e in publisher.events]
[('started', 0), ('running', 1), ('completed', 1)]
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from headwater.infra.migrations import table_for_topic
from headwater.infra.warehouse import Warehouse
from headwater.schemas.models import EventModel, ParamValue, Run

TOPIC = "runs"
RunStatus = Literal["started", "running", "completed", "failed", "pruned"]


class EventPublisher(Protocol):
    def send(self, topic: str, event: Any) -> None: ...

    def flush(self, timeout_s: float | None = None) -> None: ...


def _now_ms() -> int:
    return int(time.time() * 1000)


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def code_revision(root: Path | None = None) -> str:
    """The git commit of the code (``+dirty`` with local changes), or ``""`` outside git."""
    where = root or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return ""


class RunTracker:
    """Publishes one run's lifecycle on ``runs``."""

    def __init__(
        self,
        publisher: EventPublisher,
        run_id: str,
        model: str,
        *,
        kind: Literal["run", "trial"] = "run",
        study: str = "",
        trial_number: int = -1,
        params: Mapping[str, ParamValue] | None = None,
        lineage: Mapping[str, str] | None = None,
        revision: str = "",
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self.publisher = publisher
        self.run_id = run_id
        self.model = model
        self.kind = kind
        self.study = study
        self.trial_number = trial_number
        self.params = dict(params or {})
        self.lineage = dict(lineage or {})
        self.revision = revision
        self._clock = clock
        self._step = 0
        self.events: list[Run] = []

    def _emit(
        self,
        status: RunStatus,
        *,
        metrics: Mapping[str, float] | None = None,
        artifacts: Mapping[str, str] | None = None,
        message: str = "",
        full: bool = False,
    ) -> None:
        event = Run(
            run_id=self.run_id,
            kind=self.kind,
            model=self.model,
            study=self.study,
            trial_number=self.trial_number,
            status=status,
            step=self._step,
            params=self.params if full else {},
            metrics={k: float(v) for k, v in (metrics or {}).items()},
            artifacts=dict(artifacts or {}),
            lineage=self.lineage if full else {},
            code_revision=self.revision,
            message=message,
            event_time_ms=self._clock(),
        )
        self.events.append(event)
        self.publisher.send(TOPIC, event)

    def start(self, message: str = "") -> None:
        self._emit("started", message=message, full=True)
        self.publisher.flush()

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> bool:
        self._step = epoch
        self._emit("running", metrics=metrics)
        return True

    def complete(self, metrics: Mapping[str, float], artifacts: Mapping[str, str]) -> None:
        self._emit("completed", metrics=metrics, artifacts=artifacts, full=True)
        self.publisher.flush()

    def pruned(self, metrics: Mapping[str, float], message: str) -> None:
        self._emit("pruned", metrics=metrics, message=message)
        self.publisher.flush()

    def fail(self, message: str) -> None:
        self._emit("failed", message=message)
        self.publisher.flush()


def _param_text(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def event_row(event: EventModel) -> dict[str, Any]:
    """An event as a row of its topic's table (the warehouse stores maps of strings)."""
    row = event.to_avro()
    if isinstance(event, Run):
        row["params"] = {k: _param_text(v) for k, v in event.params.items()}
    return row


class WarehouseRecorder:
    """Writes events straight into their topic's table (``_partition`` -1: not from Kafka)."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self._pending: dict[str, list[dict[str, Any]]] = {}

    def send(self, topic: str, event: EventModel) -> None:
        self._pending.setdefault(topic, []).append(event_row(event))

    def flush(self, timeout_s: float | None = None) -> None:
        pending, self._pending = self._pending, {}
        for topic, rows in pending.items():
            columns = [*rows[0], "_partition", "_offset"]
            values = [[*row.values(), -1, -1] for row in rows]
            self.warehouse.insert(table_for_topic(topic), columns, values)


class TeePublisher:
    """Sends every event to several publishers (the bus and the warehouse)."""

    def __init__(self, publishers: Sequence[EventPublisher]) -> None:
        self.publishers = list(publishers)

    def send(self, topic: str, event: Any) -> None:
        for publisher in self.publishers:
            publisher.send(topic, event)

    def flush(self, timeout_s: float | None = None) -> None:
        for publisher in self.publishers:
            publisher.flush(timeout_s)
