"""A fixed-bin histogram sketch of a numeric feature, and PSI / Jensen–Shannon to a reference.

The bins are the training reference's deciles, so each holds a tenth of the reference and the
comparison is equally sensitive everywhere. Updating is one binary search per value (or one
``numpy.searchsorted`` per batch), so the per-event cost stays far below scoring's.

>>> import random
>>> rng = random.Random(1)
>>> reference = HistogramSketch.from_sample([rng.gauss(0, 1) for _ in range(5000)], bins=10)
>>> live = reference.empty_like()
>>> live.update_many([rng.gauss(0, 1) for _ in range(1000)])
>>> live.n, psi(live, reference) < 0.05
(1000, True)
>>> live.reset(); live.update_many([rng.gauss(1, 1) for _ in range(1000)])
>>> psi(live, reference) > 0.5, jensen_shannon(live, reference) > 0.05
(True, True)
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence

import numpy as np

# Added to every bin's count before taking logs, so an empty bin costs a bounded amount.
SMOOTHING = 0.5


class HistogramSketch:
    """Counts of values in the bins delimited by ``edges`` (``len(edges) + 1`` bins)."""

    def __init__(self, edges: Sequence[float]) -> None:
        if list(edges) != sorted(edges):
            raise ValueError(f"histogram edges must be sorted, got {list(edges)[:5]}…")
        self.edges = tuple(float(e) for e in edges)
        self._edges = np.asarray(self.edges, dtype=np.float64)
        self._counts = np.zeros(len(self.edges) + 1, dtype=np.int64)

    @classmethod
    def from_sample(cls, values: Iterable[float], bins: int = 10) -> HistogramSketch:
        """A sketch whose edges are the sample's quantiles, already holding the sample."""
        sample = np.asarray(list(values), dtype=np.float64)
        if sample.size == 0:
            raise ValueError("a reference histogram needs at least one value")
        inner = np.quantile(sample, np.arange(1, bins) / bins)
        sketch = cls(sorted(set(inner.tolist())))
        sketch.update_many(sample)
        return sketch

    @classmethod
    def from_counts(cls, edges: Sequence[float], counts: Sequence[int]) -> HistogramSketch:
        sketch = cls(edges)
        if len(counts) != len(sketch._counts):
            raise ValueError(f"{len(edges)} edges need {len(edges) + 1} counts, got {len(counts)}")
        sketch._counts[:] = counts
        return sketch

    def empty_like(self) -> HistogramSketch:
        return HistogramSketch(self.edges)

    def update(self, value: float) -> None:
        self._counts[bisect_right(self.edges, value)] += 1

    def update_many(self, values: Sequence[float] | np.ndarray) -> None:
        index = np.searchsorted(self._edges, np.asarray(values, dtype=np.float64), side="right")
        self._counts += np.bincount(index, minlength=len(self._counts))

    def reset(self) -> None:
        self._counts[:] = 0

    @property
    def counts(self) -> list[int]:
        return [int(c) for c in self._counts]

    @property
    def n(self) -> int:
        return int(self._counts.sum())

    def proportions(self) -> np.ndarray:
        smoothed = self._counts + SMOOTHING
        return np.asarray(smoothed / smoothed.sum(), dtype=np.float64)


def _pair(live: HistogramSketch, reference: HistogramSketch) -> tuple[np.ndarray, np.ndarray]:
    if live.edges != reference.edges:
        raise ValueError("live and reference histograms must share their bin edges")
    return live.proportions(), reference.proportions()


def psi(live: HistogramSketch, reference: HistogramSketch) -> float:
    """Population stability index: Σ (p − q) · ln(p / q)."""
    p, q = _pair(live, reference)
    return float(np.sum((p - q) * np.log(p / q)))


def jensen_shannon(live: HistogramSketch, reference: HistogramSketch) -> float:
    """Jensen–Shannon divergence in nats (between 0 and ln 2)."""
    p, q = _pair(live, reference)
    m = (p + q) / 2.0
    return float(0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(q * np.log(q / m)))


def linf(live: HistogramSketch, reference: HistogramSketch) -> float:
    """The largest difference of one bin's share (TFDV's L∞ distance)."""
    p, q = _pair(live, reference)
    return float(np.max(np.abs(p - q))) if p.size else math.nan
