"""Joining late labels to the predictions they judge, within a horizon, counting what never joins.

A label names its prediction by request id (or the event id, which is the request id of
predictions scored from the stream), or — when the application only knows the entity — by
entity id and the event time of the prediction's features. Either side may arrive first; each
waits up to ``horizon_ms`` (by the stream's own clock: the largest timestamp seen) for the other.
Predictions that never get a label and labels that never find a prediction are counted, never
silently dropped. The clock is event time — a prediction's features' time, a label's labelling
time — so it means the same on a replay and when the two topics are read at different speeds.
Several predictions of one request (champion and shadow) each join the label.

The clock is a bounded watermark: a timestamp counts for at most the wall clock plus
``max_skew_ms``, so one event stamped far in the future can neither expire everything at once
nor stall the clock (every later record older than it, waiting forever); the records that
carried such a time are counted in ``clamped_timestamps`` and wait as if stamped at the bound.

>>> from headwater.schemas.models import Label, Prediction
>>> def prediction(rid: str, t: int, version: int = 1) -> Prediction:
...     return Prediction(request_id=rid, entity_id="card-1", model="fraud", version=version,
...         route="champion", output=0.8, features={}, event_time_ms=t, served_at_ms=t,
...         latency_ms=1.0)
>>> joiner = LabelJoiner(horizon_ms=1000)
>>> joiner.add_prediction(prediction("r1", 0))
[]
>>> [(o.prediction.request_id, o.label.label) for o in joiner.add_label(
...     Label(request_id="r1", entity_id="card-1", label=1.0, event_time_ms=0, labeled_at_ms=500))]
[('r1', 1.0)]
>>> joiner.add_prediction(prediction("r2", 600))
[]
>>> joiner.advance(2000)
>>> joiner.counts  # doctest: +NORMALIZE_WHITESPACE
JoinCounts(predictions=2, labels=1, joined=1, unlabeled_predictions=1, unmatched_labels=0,
duplicate_labels=0, pending_predictions=0, pending_labels=0)

A prediction stamped a year ahead moves the clock only up to the bound:

>>> wall = [10_000]
>>> joiner = LabelJoiner(horizon_ms=1000, max_skew_ms=100, wall_clock_ms=lambda: wall[0])
>>> joiner.add_prediction(prediction("far", 10_000 + 365 * 86_400_000))
[]
>>> joiner.add_prediction(prediction("now", 10_050))
[]
>>> wall[0] = 12_000
>>> joiner.advance(12_000)
>>> joiner.counts.unlabeled_predictions, joiner.clamped_timestamps
(2, 1)
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from headwater.schemas.models import Label, Prediction


@dataclass(frozen=True)
class Outcome:
    """A prediction with the label that judged it."""

    prediction: Prediction
    label: Label


@dataclass(frozen=True)
class JoinCounts:
    predictions: int
    labels: int
    joined: int
    unlabeled_predictions: int
    unmatched_labels: int
    duplicate_labels: int
    pending_predictions: int
    pending_labels: int


def _entity_key(entity_id: str, event_time_ms: int) -> str:
    return f"{entity_id}\x00{event_time_ms}"


@dataclass
class _WaitingLabel:
    label: Label
    arrived_ms: int
    matched: bool


def _wall_ms() -> int:
    return int(time.time() * 1000)


class LabelJoiner:
    """Predictions and labels joined by request id (or entity + event time) within a horizon."""

    def __init__(
        self,
        horizon_ms: int,
        max_skew_ms: int = 300_000,
        wall_clock_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self.horizon_ms = horizon_ms
        self.max_skew_ms = max_skew_ms
        self.wall_clock_ms = wall_clock_ms
        self.clamped_timestamps = 0
        # request id → predictions; insertion order is arrival order, so expiry pops the front.
        self._predictions: OrderedDict[str, list[Prediction]] = OrderedDict()
        self._arrived: dict[str, int] = {}
        self._by_entity: dict[str, str] = {}
        self._labels: OrderedDict[str, _WaitingLabel] = OrderedDict()
        self._clock = 0
        self._n_predictions = self._n_labels = self._joined = 0
        self._unlabeled = self._unmatched = self._duplicates = 0

    def add_prediction(self, prediction: Prediction) -> list[Outcome]:
        """Hold a prediction for its label; returns its outcome if the label came first."""
        self._n_predictions += 1
        stamped = self._bounded(prediction.event_time_ms)
        self._tick(stamped)
        rid = prediction.request_id
        entity = _entity_key(prediction.entity_id, prediction.event_time_ms)
        waiting = self._labels.get(rid) or self._labels.get(entity)
        if waiting is not None:
            waiting.matched = True  # kept: other predictions of this request may still come
            self._joined += 1
            return [Outcome(prediction, waiting.label)]
        self._predictions.setdefault(rid, []).append(prediction)
        self._arrived.setdefault(rid, stamped)
        self._by_entity[entity] = rid
        return []

    def add_label(self, label: Label) -> list[Outcome]:
        """Join a label to its waiting predictions, or hold it for them."""
        self._n_labels += 1
        stamped = self._bounded(label.labeled_at_ms)
        self._tick(stamped)
        entity = _entity_key(label.entity_id, label.event_time_ms)
        rid = label.request_id or label.event_id or self._by_entity.get(entity, "")
        key = rid or entity
        if key in self._labels:
            self._duplicates += 1  # a second label for one request: the first one stands
            return []
        predictions = self._predictions.pop(rid, None) if rid else None
        self._labels[key] = _WaitingLabel(label, stamped, matched=bool(predictions))
        if not predictions:
            return []
        self._forget(rid, predictions)
        self._joined += len(predictions)
        return [Outcome(p, label) for p in predictions]

    def advance(self, now_ms: int) -> None:
        """Move the clock; what waited longer than the horizon is expired and counted."""
        self._tick(self._bounded(now_ms))

    def _bounded(self, timestamp_ms: int) -> int:
        """The timestamp, or the watermark's bound (wall clock + skew) if it lies beyond."""
        bound = self.wall_clock_ms() + self.max_skew_ms
        if timestamp_ms <= bound:
            return timestamp_ms
        self.clamped_timestamps += 1
        return bound

    def _tick(self, now_ms: int) -> None:
        if now_ms <= self._clock:
            return
        self._clock = now_ms
        cutoff = now_ms - self.horizon_ms
        while self._predictions:
            rid, predictions = next(iter(self._predictions.items()))
            if self._arrived[rid] >= cutoff:
                break
            del self._predictions[rid]
            self._forget(rid, predictions)
            self._unlabeled += len(predictions)
        while self._labels:
            key, waiting = next(iter(self._labels.items()))
            if waiting.arrived_ms >= cutoff:
                break
            del self._labels[key]
            self._unmatched += not waiting.matched

    def _forget(self, rid: str, predictions: list[Prediction]) -> None:
        self._arrived.pop(rid, None)
        for p in predictions:
            self._by_entity.pop(_entity_key(p.entity_id, p.event_time_ms), None)

    @property
    def counts(self) -> JoinCounts:
        return JoinCounts(
            predictions=self._n_predictions,
            labels=self._n_labels,
            joined=self._joined,
            unlabeled_predictions=self._unlabeled,
            unmatched_labels=self._unmatched,
            duplicate_labels=self._duplicates,
            pending_predictions=sum(len(p) for p in self._predictions.values()),
            pending_labels=sum(1 for w in self._labels.values() if not w.matched),
        )
