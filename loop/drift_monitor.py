"""Per-feature data drift of one model version: live windows of served features against the
training reference, tested with PSI, Jensen–Shannon and Kolmogorov–Smirnov (numeric) or χ² and
L∞ (categorical), each alarm a typed :class:`~headwater.schemas.models.DriftAlarm`.

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
>>> sorted(t.statistic for t in monitor.last_window)  # passed or not: what gauges show
['jsd', 'ks', 'psi']
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from headwater.loop.alarms import WindowTest
from headwater.loop.calibration import window_thresholds
from headwater.loop.categorical import CategoricalSketch
from headwater.loop.histogram import HistogramSketch
from headwater.loop.numeric_block import NumericBlock
from headwater.loop.quantiles import QuantileSketch
from headwater.schemas.avro_plan import NATIVE_BUILT
from headwater.schemas.models import DriftAlarm

if NATIVE_BUILT:  # else (see scripts/install.sh) Python builds the window, at 2x the cost
    from headwater_native import RowMatrix


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


@dataclass(frozen=True)
class VersionReference:
    """What one model version was trained on: each feature's training distribution and the
    event time of the newest training row (``None``: not recorded).

    Drift is a change of the world *after* training. An event at or before ``trained_until_ms``
    is in (or older than) the training sample: a window of such events is not an independent
    sample of what the version now serves — it may even be the reference itself, or the
    population training left out on purpose (a stream's cold start) — so the loop watches only
    the events after it (:meth:`watches`). Scoring a backlog when a version starts serving
    is such a case, and how much of it falls into the first windows depends on timing.

    >>> ref = VersionReference({}, trained_until_ms=1_000)
    >>> ref.watches(1_000), ref.watches(1_001), VersionReference({}).watches(0)
    (False, True, True)
    """

    features: Mapping[str, FeatureReference | CategoricalReference]
    trained_until_ms: int | None = None

    def watches(self, event_time_ms: int) -> bool:
        """Whether an event of this time is evidence about the world after training."""
        return self.trained_until_ms is None or event_time_ms > self.trained_until_ms


@dataclass
class _Tests:
    """How one feature is tested per window: numeric features go through the shared
    :class:`NumericBlock`; a categorical one keeps its own sketch."""

    reference: FeatureReference | CategoricalReference
    categorical: CategoricalSketch[float] | None = None

    @classmethod
    def of(cls, reference: FeatureReference | CategoricalReference) -> _Tests:
        if isinstance(reference, CategoricalReference):
            return cls(reference, CategoricalSketch(reference.shares, reference.size))
        return cls(reference)

    def statistics(self, values: np.ndarray, alpha: float) -> list[tuple[str, float, float]]:
        """(statistic, value, threshold) of one closed window of a categorical feature."""
        if self.categorical is None:
            return []
        self.categorical.reset()
        self.categorical.update_many(values.tolist())
        return [("chi2", self.categorical.chi2(), self.categorical.threshold(alpha))]


def _row_getter(names: list[str]) -> Callable[[Mapping[str, float]], Iterable[float]]:
    """A C-level lookup of ``names`` in a row, always returning a tuple."""
    if len(names) == 1:
        only = names[0]
        return lambda row: (row[only],)
    return operator.itemgetter(*names) if names else lambda row: ()


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
        numeric = [
            (i, ref)
            for i, ref in enumerate(references.values())
            if isinstance(ref, FeatureReference)
        ]
        self._numeric_columns = [i for i, _ in numeric]
        self._block = NumericBlock([ref for _, ref in numeric]) if numeric else None
        self._native = RowMatrix(self._names) if NATIVE_BUILT else None
        # One append per event; columns are cut out once per window (cheaper than per feature).
        self._rows: list[Mapping[str, float]] = []
        self._start_ms: int | None = None
        self.windows_tested = 0
        self.last_window: list[WindowTest] = []  # every test of the latest window, passed or not

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
        matrix = self._matrix()
        found = self._numeric_tests(matrix, per_test_alpha)
        for column, (name, tests) in enumerate(self._tests.items()):
            if tests.categorical is None:
                continue
            values = matrix[:, column]
            values = values[~np.isnan(values)]
            if values.size:
                found += [(name, *t, values.size) for t in tests.statistics(values, per_test_alpha)]
        window = [
            WindowTest(name, statistic, value, threshold, size, start_ms, end_ms)
            for name, statistic, value, threshold, size in found
        ]
        alarms = [
            test.alarm(self.model, self.version, self.kind)
            for test in window
            if test.value > test.threshold
        ]
        self.last_window = window
        self._rows, self._start_ms = [], None
        self.windows_tested += 1
        return alarms

    def _numeric_tests(
        self, matrix: np.ndarray, alpha: float
    ) -> list[tuple[str, str, float, float, int]]:
        """(feature, statistic, value, threshold, size) of every numeric feature, computed for
        all of them at once."""
        block = self._block
        if block is None:
            return []
        numeric = self._numeric_columns
        stats = block.statistics(matrix if len(numeric) == matrix.shape[1] else matrix[:, numeric])
        found = []
        # Python lists once: indexing numpy arrays element by element costs more than the tests.
        columns = zip(
            block.names,
            stats["n"].astype(np.int64).tolist(),
            block.sizes.astype(np.int64).tolist(),
            block.bins.tolist(),
            stats["psi"].tolist(),
            stats["jsd"].tolist(),
            stats["ks"].tolist(),
            strict=True,
        )
        for name, n, m, bins, psi, jsd, ks in columns:
            if n == 0 or bins < 2:
                continue  # nothing served, or a constant training feature: nothing to compare
            psi_limit, jsd_limit, ks_limit = window_thresholds(alpha, bins, n, m)
            found += [
                (name, "psi", psi, psi_limit, n),
                (name, "jsd", jsd, jsd_limit, n),
                (name, "ks", ks, ks_limit, n),
            ]
        return found

    def _matrix(self) -> np.ndarray:
        """The window as one row per event, one column per monitored feature (NaN: absent)."""
        if self._native is not None:  # half the cost: rows read in their own key order
            cells = np.frombuffer(self._native.build(self._rows), dtype=np.float64)
            return cells.reshape(len(self._names), len(self._rows)).T  # each column contiguous
        return python_matrix(self._rows, self._names)


def python_matrix(rows: list[Mapping[str, float]], names: list[str]) -> np.ndarray:
    """:meth:`DriftMonitor._matrix` without the native reader."""
    try:  # the common case, every feature logged: one C-level lookup per row
        flat = itertools.chain.from_iterable(map(_row_getter(names), rows))
        values = np.fromiter(flat, dtype=np.float64, count=len(rows) * len(names))
        return values.reshape(len(rows), len(names))
    except KeyError:
        nan = float("nan")
        return np.array([[row.get(n, nan) for n in names] for row in rows], dtype=np.float64)
