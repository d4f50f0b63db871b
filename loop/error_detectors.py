"""Change detectors on a model's error stream (0/1 mistakes or per-example losses), wrapping
river's ADWIN and a Page–Hinkley of river's form, with thresholds stated as a false-alarm rate.

* :class:`AdwinDetector` — ADWIN checks every ``clock`` events and cuts its window when two
  sub-windows differ beyond a Hoeffding bound at confidence ``delta``; events between false
  alarms are at least ``clock / delta`` (64 000 at the defaults; none was seen in 250 000
  stationary Bernoulli(0.2) errors).
* :class:`PageHinkleyDetector` — a one-sided CUSUM on increases of the error. Its threshold is
  solved from the average run length to a false alarm (Siegmund's approximation,
  ``ARL₀ ≈ σ²/(2δ²)·(e^a − 1 − a)`` with ``a = 2δλ/σ²``) for a target number of events between
  false alarms, with σ² ≤ 1/4 for 0/1 errors.

>>> import random
>>> rng = random.Random(7)
>>> detector = PageHinkleyDetector(events_between_false_alarms=100_000)
>>> any(detector.update(float(rng.random() < 0.1)) for _ in range(5000))
False
>>> delay = next(i for i in range(5000) if detector.update(float(rng.random() < 0.5)))
>>> delay < 500, abs(detector.since_change - (delay + 1)) < 50  # the change point, estimated
(True, True)
"""

from __future__ import annotations

import math
from typing import Protocol

from river import drift

from headwater.schemas.avro_plan import NATIVE_BUILT

if NATIVE_BUILT:
    from headwater_native import PageHinkley


class ErrorDetector(Protocol):
    """What the agents use: feed one error, learn whether the detector just alarmed."""

    statistic: str

    def update(self, error: float) -> bool: ...

    @property
    def threshold(self) -> float: ...

    @property
    def since_change(self) -> int:
        """Updates since the estimated change point (read when the detector alarms)."""
        ...

    @property
    def value(self) -> float: ...


class AdwinDetector:
    """ADWIN on the error stream (river), reporting the error's mean over its current window.

    >>> detector = AdwinDetector()
    >>> [detector.update(0.0) for _ in range(3)]
    [False, False, False]
    """

    statistic = "adwin"

    def __init__(self, delta: float = 0.0005, clock: int = 32) -> None:
        self.delta = delta
        self.clock = clock
        self._adwin = drift.ADWIN(delta=delta, clock=clock)  # type: ignore[no-untyped-call]

    def update(self, error: float) -> bool:
        self._adwin.update(error)  # type: ignore[no-untyped-call]
        return bool(self._adwin.drift_detected)

    @property
    def threshold(self) -> float:
        return self.delta

    @property
    def value(self) -> float:
        return float(self._adwin.estimation)

    @property
    def events_between_false_alarms(self) -> float:
        return self.clock / self.delta

    @property
    def since_change(self) -> int:
        # At a detection ADWIN drops the older part: what stays came after the change.
        return int(self._adwin.width)


def page_hinkley_threshold(arl: float, delta: float, variance: float = 0.25) -> float:
    """λ such that Page–Hinkley's average run length under "no change" is ``arl`` events."""
    scale = variance / (2.0 * delta * delta)
    low, high = 0.0, 1.0
    while scale * (math.exp(high) - 1.0 - high) < arl:
        high *= 2.0
    for _ in range(60):  # bisection on a = 2δλ/σ²
        mid = (low + high) / 2.0
        low, high = (mid, high) if scale * (math.exp(mid) - 1.0 - mid) < arl else (low, mid)
    return high * variance / (2.0 * delta)


class PageHinkleyDetector:
    """Page–Hinkley on increases of the error, calibrated to a false-alarm rate.

    The recurrences are river's ``PageHinkley(mode="up")`` (forgetting factor ``alpha``, at
    least ``min_instances`` before any alarm, a fresh start after one), written out here: the
    loop calls it for every labelled prediction, and river's general form (both directions,
    a ``Mean`` object, a test chosen by mode) cost twice the rest of the error detectors.
    ``tests/loop/test_detectors.py`` checks it alarms where river's does.

    >>> round(PageHinkleyDetector(events_between_false_alarms=100_000).threshold, 1)
    55.6
    """

    statistic = "page_hinkley"

    def __init__(
        self,
        events_between_false_alarms: float = 100_000,
        delta: float = 0.01,
        min_instances: int = 30,
        alpha: float = 1 - 0.0001,
        *,
        native: bool = True,
    ) -> None:
        """``native``: the same recurrences in ``headwater_native`` (identical answers at a
        third of the cost per update), where it is built."""
        self.events_between_false_alarms = events_between_false_alarms
        self.delta = delta
        self.min_instances = min_instances
        self.alpha = alpha
        self._threshold = page_hinkley_threshold(events_between_false_alarms, delta)
        self._start()
        self._native = (
            PageHinkley(self._threshold, delta, min_instances, alpha)
            if native and NATIVE_BUILT
            else None
        )
        if self._native is not None:  # called as is: no Python frame per update
            self.update = self._native.update  # type: ignore[method-assign]

    def _start(self) -> None:
        self._updates = 0
        self._mean = 0.0
        self._sum = 0.0  # the cumulative deviation above the running mean, less delta
        self._minimum = math.inf  # its running minimum
        self._at_minimum = 0  # the change-point estimate: the update where the sum was lowest
        self._alarmed = False

    def update(self, error: float) -> bool:
        if self._alarmed:
            self._start()
        self._updates = updates = self._updates + 1
        self._mean += (1.0 / updates) * (error - self._mean)  # river's Mean, to the bit
        self._sum = total = self.alpha * self._sum + (error - self._mean) - self.delta
        if total < self._minimum:
            self._minimum = total
        if total - self._minimum <= 0.0:
            self._at_minimum = updates
        self._alarmed = updates >= self.min_instances and total - self._minimum > self._threshold
        return self._alarmed

    @property
    def since_change(self) -> int:
        if self._native is not None:
            return self._native.since_change
        return self._updates - self._at_minimum

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def value(self) -> float:
        """The one-sided statistic: the cumulative deviation above its running minimum."""
        if self._native is not None:
            return self._native.value
        return 0.0 if self._updates == 0 else self._sum - self._minimum
