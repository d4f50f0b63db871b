"""Per-feature data drift of one model version: live windows of served features against the
training reference, tested with PSI, Jensen–Shannon and Kolmogorov–Smirnov (numeric) or χ² and
L∞ (categorical), each alarm a typed :class:`~schemas.models.DriftAlarm`.

Values are buffered and counted once per window (``numpy`` per batch), so the per-event cost is
an append per feature. A window of ``window`` events raises a false alarm with probability at
most ``alpha`` (Bonferroni across features and statistics), so on a stationary stream the
expected number of events between false alarms is at least ``window / alpha`` (5 000 000 at the
defaults).

>>> import random
>>> rng = random.Random(3)
>>> sample = [rng.gauss(50, 10) for _ in range(5000)]
>>> refs = {"amount": FeatureReference.from_sample("amount", sample)}
>>> monitor = DriftMonitor("fraud", 1, refs, window=500)
>>> alarms = [a for t in range(2000) for a in monitor.update({"amount": rng.gauss(50, 10)}, t)]
>>> alarms
[]
>>> alarms = [a for t in range(500) for a in monitor.update({"amount": rng.gauss(70, 10)}, t)]
>>> sorted({a.statistic for a in alarms}), alarms[0].kind, alarms[0].feature
(['jsd', 'ks', 'psi'], 'data', 'amount')
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from schemas.models import DriftAlarm
from streams.loop.calibration import jsd_threshold, ks_critical, psi_threshold
from streams.loop.categorical import CategoricalSketch
from streams.loop.histogram import HistogramSketch, jensen_shannon, psi
from streams.loop.quantiles import QuantileSketch

# A value this many times its threshold makes an alarm critical rather than a warning.
CRITICAL_FACTOR = 2.0


@dataclass(frozen=True)
class FeatureReference:
    """The training distribution of one numeric feature: decile bins and quantiles."""

    name: str
    histogram_edges: tuple[float, ...]
    histogram_counts: tuple[int, ...]
    quantiles: tuple[float, ...]
    quantile_cdf: tuple[float, ...]
    size: int
    strict_cdf: bool = False  # the CDF is F(x < q) rather than F(x ≤ q)

    @classmethod
    def from_sample(
        cls, name: str, values: Iterable[float], quantiles: int = 50
    ) -> FeatureReference:
        sample = np.asarray(list(values), dtype=np.float64)
        histogram = HistogramSketch.from_sample(sample)
        sketch = QuantileSketch.from_sample(sample, quantiles)
        return cls(
            name,
            histogram.edges,
            tuple(histogram.counts),
            sketch.quantiles,
            sketch.cdf,
            int(sample.size),
        )


@dataclass(frozen=True)
class CategoricalReference:
    """The training shares of one categorical feature's values."""

    name: str
    shares: Mapping[float, float] = field(default_factory=dict)
    size: int = 1


@dataclass
class _Tests:
    """The live sketches of one feature and how to test them."""

    reference: FeatureReference | CategoricalReference
    histogram: HistogramSketch | None = None
    base: HistogramSketch | None = None
    quantiles: QuantileSketch | None = None
    categorical: CategoricalSketch[float] | None = None

    @classmethod
    def of(cls, reference: FeatureReference | CategoricalReference) -> _Tests:
        if isinstance(reference, CategoricalReference):
            return cls(reference, categorical=CategoricalSketch(reference.shares, reference.size))
        base = HistogramSketch.from_counts(reference.histogram_edges, reference.histogram_counts)
        return cls(
            reference,
            histogram=base.empty_like(),
            base=base,
            quantiles=QuantileSketch(
                reference.quantiles,
                reference.quantile_cdf,
                reference.size,
                strict=reference.strict_cdf,
            ),
        )

    def statistics(self, values: np.ndarray, alpha: float) -> list[tuple[str, float, float]]:
        """(statistic, value, threshold) of one closed window."""
        n, m = len(values), self.reference.size
        if self.categorical is not None:
            self.categorical.reset()
            self.categorical.update_many(values.tolist())
            return [("chi2", self.categorical.chi2(), self.categorical.threshold(alpha))]
        assert self.histogram is not None and self.base is not None and self.quantiles is not None
        self.histogram.reset()
        self.histogram.update_many(values)
        self.quantiles.reset()
        self.quantiles.update_many(values)
        bins = len(self.histogram.edges) + 1
        if bins < 2:
            return []  # a constant training feature: one bin, nothing to compare
        return [
            ("psi", psi(self.histogram, self.base), psi_threshold(alpha, bins, n, m)),
            ("jsd", jensen_shannon(self.histogram, self.base), jsd_threshold(alpha, bins, n, m)),
            ("ks", self.quantiles.ks(), ks_critical(alpha, n, m)),
        ]


class DriftMonitor:
    """Windows of one model version's served features, tested against its training reference."""

    def __init__(
        self,
        model: str,
        version: int,
        references: Mapping[str, FeatureReference | CategoricalReference],
        window: int = 500,
        alpha: float = 1e-4,
        kind: Literal["data", "skew"] = "data",
    ) -> None:
        self.model = model
        self.version = version
        self.window = window
        self.alpha = alpha
        self.kind = kind
        self._tests = {name: _Tests.of(ref) for name, ref in references.items()}
        self._names = list(self._tests)
        self._getter: Callable[[Mapping[str, float]], object] = (
            operator.itemgetter(*self._names) if self._names else lambda row: ()
        )
        # One append per event; columns are cut out once per window (cheaper than per feature).
        self._rows: list[Mapping[str, float]] = []
        self._start_ms: int | None = None
        self.windows_tested = 0

    @property
    def tests_per_window(self) -> int:
        return sum(1 if t.categorical is not None else 3 for t in self._tests.values())

    def update(self, features: Mapping[str, float], event_time_ms: int) -> list[DriftAlarm]:
        """Add one served feature vector; returns the alarms of a window this event closed."""
        self._rows.append(features)
        if self._start_ms is None:
            self._start_ms = event_time_ms
        if len(self._rows) < self.window:
            return []
        return self._close(event_time_ms)

    def _close(self, end_ms: int) -> list[DriftAlarm]:
        per_test_alpha = self.alpha / max(self.tests_per_window, 1)
        start_ms = self._start_ms if self._start_ms is not None else end_ms
        alarms = []
        matrix = self._matrix()
        for column, (name, tests) in enumerate(self._tests.items()):
            values = matrix[:, column]
            values = values[~np.isnan(values)]
            if not values.size:
                continue
            for statistic, value, threshold in tests.statistics(values, per_test_alpha):
                if value > threshold:
                    alarms.append(
                        self._alarm(
                            name, statistic, value, threshold, len(values), start_ms, end_ms
                        )
                    )
        self._rows, self._start_ms = [], None
        self.windows_tested += 1
        return alarms

    def _matrix(self) -> np.ndarray:
        """The window as one row per event, one column per monitored feature (NaN: absent)."""
        try:  # the common case, every feature logged: one C-level lookup per row
            rows = [self._getter(row) for row in self._rows]
            return np.array(rows, dtype=np.float64).reshape(len(rows), len(self._names))
        except KeyError:
            nan = float("nan")
            return np.array([[row.get(n, nan) for n in self._names] for row in self._rows])

    def _alarm(
        self,
        feature: str,
        statistic: str,
        value: float,
        threshold: float,
        size: int,
        start_ms: int,
        end_ms: int,
    ) -> DriftAlarm:
        severity: Literal["warning", "critical"] = (
            "critical" if value >= CRITICAL_FACTOR * threshold else "warning"
        )
        return DriftAlarm(
            alarm_id=f"{self.kind}:{self.model}@{self.version}/{feature}/{statistic}/{end_ms}",
            model=self.model,
            version=self.version,
            feature=feature,
            kind=self.kind,
            statistic=statistic,
            value=value,
            threshold=threshold,
            window_size=size,
            window_start_ms=start_ms,
            window_end_ms=end_ms,
            severity=severity,
            detected_at_ms=end_ms,
        )
