"""Training–serving skew: the features serving logged against the offline recomputation of the
same feature declarations for the same events, compared in stream (TFDV's L∞ and Jensen–Shannon
comparators, one window of paired events at a time).

With one definition of each feature the two sides are equal and both statistics are 0. The
thresholds are those of two *independent* samples of the window's size at level ``alpha``
(Bonferroni over features and the two statistics), so honest rounding never alarms and a real
bug — a unit change, a wrong window, a stale join — is reported at the end of the first window it
touches: within ``window`` events of its start (two windows if it starts mid-window).

>>> monitor = SkewMonitor("fraud", 1, window=100)
>>> [a for t in range(300) for a in monitor.update({"amount": t % 37}, {"amount": t % 37}, t)]
[]
>>> alarms = [a for t in range(100) for a in monitor.update({"amount": 100.0 * (t % 37)},
...     {"amount": t % 37}, t)]
>>> sorted((a.kind, a.feature, a.statistic) for a in alarms)
[('skew', 'amount', 'jsd'), ('skew', 'amount', 'linf')]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from headwater.loop.alarms import WindowTest
from headwater.loop.calibration import jsd_threshold, ks_critical
from headwater.loop.histogram import HistogramSketch
from headwater.schemas.models import DriftAlarm

BINS = 10


def _paired_histograms(served: list[float], offline: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Shares of both sides in the offline side's decile bins, plus a "missing" cell: a feature
    serving did not log is a mismatch, never a pass."""
    reference = HistogramSketch.from_sample(offline, bins=BINS)
    values = np.asarray(served, dtype=np.float64)
    missing = np.isnan(values)
    live = reference.empty_like()
    live.update_many(values[~missing])
    n = float(len(offline))
    live_shares = np.append(np.asarray(live.counts), missing.sum()) / n
    reference_shares = np.append(np.asarray(reference.counts), 0) / n
    return live_shares, reference_shares


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    return float(0.5 * left.sum() + 0.5 * right.sum())


class SkewMonitor:
    """Windows of (served, recomputed) feature pairs of one model version."""

    def __init__(self, model: str, version: int, window: int = 200, alpha: float = 1e-4) -> None:
        self.model = model
        self.version = version
        self.window = window
        self.alpha = alpha
        self._served: dict[str, list[float]] = {}
        self._offline: dict[str, list[float]] = {}
        self._seen = 0
        self._start_ms: int | None = None
        self.missing_features = 0

    def update(
        self, served: Mapping[str, float], recomputed: Mapping[str, float], event_time_ms: int
    ) -> list[DriftAlarm]:
        """Add one event's two feature vectors; returns alarms of a window it closed."""
        for name, offline in recomputed.items():
            value = served.get(name)
            if value is None:
                self.missing_features += 1  # serving dropped a declared feature: also skew
                value = float("nan")
            self._served.setdefault(name, []).append(value)
            self._offline.setdefault(name, []).append(offline)
        if self._start_ms is None:
            self._start_ms = event_time_ms
        self._seen += 1
        if self._seen < self.window:
            return []
        return self._close(event_time_ms)

    def _close(self, end_ms: int) -> list[DriftAlarm]:
        alpha = self.alpha / max(2 * len(self._offline), 1)
        start_ms = self._start_ms if self._start_ms is not None else end_ms
        alarms = []
        for name, offline in self._offline.items():
            live, reference = _paired_histograms(self._served[name], offline)
            n = len(offline)
            bins = live.size
            checks = (
                ("linf", float(np.max(np.abs(live - reference))), ks_critical(alpha, n, n)),
                ("jsd", _jensen_shannon(live, reference), jsd_threshold(alpha, bins, n, n)),
            )
            for statistic, value, threshold in checks:
                if value > threshold:  # skew is a bug, never noise: always critical
                    test = WindowTest(name, statistic, value, threshold, n, start_ms, end_ms)
                    alarms.append(test.alarm(self.model, self.version, "skew", "critical"))
        self._served, self._offline = {}, {}
        self._seen, self._start_ms = 0, None
        return alarms
