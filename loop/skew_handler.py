"""Training–serving skew in stream: the offline declarations recomputed for every validated event,
paired with the features serving logged on its prediction, fed to a :class:`SkewMonitor`.

The recomputation is the offline path's own
(:meth:`headwater.streams.featureset.EntityState.update`,
entity by entity in arrival order), so a mismatch means the serving path computed or read
something else — a unit change, a stale online store, a wrong feature version. Pairs wait for
their other half up to ``max_pending`` records per side; older ones are evicted and counted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from headwater.loop.agent_runner import Output
from headwater.loop.skew import SkewMonitor
from headwater.schemas.models import Event, EventModel, Prediction
from headwater.streams.featureset import EntityState, FeatureSet

V = TypeVar("V")


@dataclass
class SkewCounts:
    events: int = 0
    predictions: int = 0
    paired: int = 0
    evicted: int = 0
    alarms: int = 0


class SkewHandler:
    """``events`` and ``predictions`` in, ``drift`` alarms of kind ``skew`` out."""

    topics: Sequence[str] = ("events", "predictions")

    def __init__(
        self,
        feature_set: FeatureSet,
        *,
        window: int = 200,
        alpha: float = 1e-4,
        max_pending: int = 50_000,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.feature_set = feature_set
        self.window = window
        self.alpha = alpha
        self.max_pending = max_pending
        self.clock = clock
        self._states: dict[str, EntityState] = {}
        self._recomputed: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._served: OrderedDict[str, Prediction] = OrderedDict()
        self._monitors: dict[tuple[str, int], SkewMonitor] = {}
        self.counts = SkewCounts()

    def handle(self, topic: str, event: EventModel) -> list[Output]:
        if isinstance(event, Event) and event.event_type == self.feature_set.event_type:
            return self._event(event)
        if isinstance(event, Prediction) and event.route != "shadow" and not event.fallback:
            return self._prediction(event)
        return []

    def on_tick(self, now_ms: int) -> list[Output]:
        return []

    def _event(self, event: Event) -> list[Output]:
        self.counts.events += 1
        state = self._states.get(event.entity_id)
        if state is None:
            state = self._states[event.entity_id] = self.feature_set.new_state()
        values = state.update(
            event.event_time_ms, event.numeric, event.categorical, event.source_offset
        )
        if values is None:
            return []  # a redelivered or too-late event: serving skipped it too
        served = self._served.pop(event.event_id, None)
        if served is not None:
            return self._compare(served, values)
        self._remember(self._recomputed, event.event_id, values)
        return []

    def _prediction(self, prediction: Prediction) -> list[Output]:
        self.counts.predictions += 1
        values = self._recomputed.pop(prediction.request_id, None)
        if values is not None:
            return self._compare(prediction, values)
        self._remember(self._served, prediction.request_id, prediction)
        return []

    def _remember(self, pending: OrderedDict[str, V], key: str, value: V) -> None:
        pending[key] = value
        while len(pending) > self.max_pending:
            pending.popitem(last=False)
            self.counts.evicted += 1

    def _compare(self, prediction: Prediction, recomputed: dict[str, float]) -> list[Output]:
        self.counts.paired += 1
        key = (prediction.model, prediction.version)
        monitor = self._monitors.get(key)
        if monitor is None:
            monitor = self._monitors[key] = SkewMonitor(*key, window=self.window, alpha=self.alpha)
        # compare the features the model read: serving logs exactly those
        offline = {name: recomputed[name] for name in prediction.features if name in recomputed}
        now = self.clock() if self.clock else prediction.served_at_ms
        alarms = monitor.update(prediction.features, offline, now)
        self.counts.alarms += len(alarms)
        return [("drift", alarm) for alarm in alarms]
