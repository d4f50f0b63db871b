"""Live quality per model version and route over tumbling and sliding windows, as
:class:`~headwater.schemas.models.Metric` events.

Outcomes are placed in event time by when they became known (the later of the prediction's
features and the labelling), the
only clock that moves forward when labels arrive hours late. A tumbling window of ``tumbling_ms``
closes when an outcome past its end arrives (or :meth:`LiveQuality.flush` is called); the sliding
window holds the last ``sliding`` outcomes and is reported every ``emit_every`` of them.

>>> from headwater.schemas.models import Label, Prediction
>>> from headwater.loop.label_join import Outcome
>>> def outcome(t: int, output: float, label: float) -> Outcome:
...     p = Prediction(request_id=f"r{t}", entity_id="c", model="fraud", version=2,
...         route="canary", output=output, features={}, event_time_ms=t, served_at_ms=t,
...         latency_ms=1.0)
...     return Outcome(p, Label(request_id=f"r{t}", entity_id="c", label=label,
...         event_time_ms=t, labeled_at_ms=t))
>>> quality = LiveQuality(tumbling_ms=1000, sliding=4, emit_every=4)
>>> metrics = [m for t in range(0, 1100, 100) for m in quality.update(outcome(t, 0.9, 1.0))]
>>> sorted({(m.window, m.metric) for m in metrics if m.metric == "accuracy"})
[('sliding:4', 'accuracy'), ('tumbling:1000ms', 'accuracy')]
>>> [(m.window_start_ms, m.count, m.value) for m in metrics if m.window.startswith("tumbling")
...     and m.metric == "accuracy"]
[(0, 10, 1.0)]
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from headwater.loop.label_join import Outcome
from headwater.loop.quality import Task, quality_metrics
from headwater.schemas.models import Metric

Key = tuple[str, int, str]


@dataclass
class _Windows:
    tumbling_start: int
    labels: list[float] = field(default_factory=list)
    outputs: list[float] = field(default_factory=list)
    recent: deque[tuple[float, float]] = field(default_factory=deque)
    since_emit: int = 0


class LiveQuality:
    """Tumbling and sliding windows of labelled outcomes per (model, version, route)."""

    def __init__(
        self,
        task: Task = "classification",
        tumbling_ms: int = 60_000,
        sliding: int = 500,
        emit_every: int = 100,
        threshold: float = 0.5,
    ) -> None:
        self.task: Task = task
        self.tumbling_ms = tumbling_ms
        self.sliding = sliding
        self.emit_every = emit_every
        self.threshold = threshold
        self._windows: dict[Key, _Windows] = {}

    def update(self, outcome: Outcome) -> list[Metric]:
        p = outcome.prediction
        key = (p.model, p.version, p.route)
        known_at = max(p.event_time_ms, outcome.label.labeled_at_ms)
        start = known_at - known_at % self.tumbling_ms
        windows = self._windows.get(key)
        if windows is None:
            windows = self._windows[key] = _Windows(start, recent=deque(maxlen=self.sliding))
        metrics = []
        if start > windows.tumbling_start:
            metrics += self._close_tumbling(key, windows)
            windows.tumbling_start = start
        windows.labels.append(outcome.label.label)
        windows.outputs.append(p.output)
        windows.recent.append((outcome.label.label, p.output))
        windows.since_emit += 1
        if windows.since_emit >= self.emit_every:
            windows.since_emit = 0
            metrics += self._sliding(key, windows, known_at)
        return metrics

    def flush(self) -> list[Metric]:
        """Close every open tumbling window (at shutdown, or on a timer)."""
        metrics = []
        for key, windows in self._windows.items():
            metrics += self._close_tumbling(key, windows)
        return metrics

    def _close_tumbling(self, key: Key, windows: _Windows) -> list[Metric]:
        if not windows.labels:
            return []
        y, p = np.asarray(windows.labels), np.asarray(windows.outputs)
        start = windows.tumbling_start
        windows.labels, windows.outputs = [], []
        return self._events(
            key, y, p, f"tumbling:{self.tumbling_ms}ms", start, start + self.tumbling_ms
        )

    def _sliding(self, key: Key, windows: _Windows, now_ms: int) -> list[Metric]:
        y = np.asarray([label for label, _ in windows.recent])
        p = np.asarray([output for _, output in windows.recent])
        return self._events(key, y, p, f"sliding:{self.sliding}", now_ms, now_ms)

    def _events(
        self, key: Key, y: np.ndarray, p: np.ndarray, window: str, start: int, end: int
    ) -> list[Metric]:
        model, version, route = key
        return [
            Metric(
                model=model,
                version=version,
                route=route,
                metric=name,
                value=value,
                window=window,
                window_start_ms=start,
                window_end_ms=end,
                count=int(y.size),
            )
            for name, value in quality_metrics(self.task, y, p, self.threshold).items()
        ]
