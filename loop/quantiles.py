"""A quantile sketch of the training reference, and the two-sample Kolmogorov–Smirnov statistic.

The reference is kept as its ``k`` quantiles and its CDF at each of them (j/k for continuous
values; ties of a discrete feature merge quantiles and the CDF records their true mass); the live
window is counted between them. The KS distance evaluated at the quantiles,
``max_j |F_live(q_j) − F_ref(q_j)|``, is within ``1/k`` of the exact statistic, in O(k) memory.

>>> import random
>>> rng = random.Random(2)
>>> sketch = QuantileSketch.from_sample([rng.random() for _ in range(4000)], quantiles=50)
>>> sketch.update_many([rng.random() for _ in range(800)])
>>> sketch.ks() < 0.06
True
>>> sketch.reset(); sketch.update_many([rng.random() ** 2 for _ in range(800)])
>>> sketch.ks() > 0.2
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np


class QuantileSketch:
    """The reference's quantiles, its CDF there (sample size ``reference_size``), and the live
    counts between them."""

    def __init__(
        self,
        quantiles: Sequence[float],
        cdf: Sequence[float],
        reference_size: int,
        *,
        strict: bool = False,
    ) -> None:
        if reference_size < 1:
            raise ValueError("a quantile sketch needs a reference of at least one value")
        if len(cdf) != len(quantiles):
            raise ValueError(f"{len(quantiles)} quantiles need as many CDF values, got {len(cdf)}")
        self.quantiles = tuple(float(q) for q in quantiles)
        self.cdf = tuple(float(c) for c in cdf)
        self.reference_size = reference_size
        # strict: the reference CDF is F(x < q) (numpy histogram bins), else F(x ≤ q); the live
        # side counts the same way, or ties of a discrete feature would look like drift.
        self.strict = strict
        self._side: Literal["left", "right"] = "right" if strict else "left"
        self._edges = np.asarray(self.quantiles, dtype=np.float64)
        self._counts = np.zeros(len(self.quantiles) + 1, dtype=np.int64)
        self._reference_cdf = np.asarray(self.cdf, dtype=np.float64)

    @classmethod
    def from_sample(cls, values: Iterable[float], quantiles: int = 50) -> QuantileSketch:
        sample = np.asarray(list(values), dtype=np.float64)
        if sample.size == 0:
            raise ValueError("a reference quantile sketch needs at least one value")
        inner = np.unique(np.quantile(sample, np.arange(1, quantiles) / quantiles))
        cdf = np.searchsorted(np.sort(sample), inner, side="right") / sample.size
        return cls(inner.tolist(), cdf.tolist(), int(sample.size))

    def empty_like(self) -> QuantileSketch:
        return QuantileSketch(self.quantiles, self.cdf, self.reference_size, strict=self.strict)

    def update(self, value: float) -> None:
        self._counts[int(np.searchsorted(self._edges, value, side=self._side))] += 1

    def update_many(self, values: Sequence[float] | np.ndarray) -> None:
        index = np.searchsorted(self._edges, np.asarray(values, dtype=np.float64), side=self._side)
        self._counts += np.bincount(index, minlength=len(self._counts))

    def reset(self) -> None:
        self._counts[:] = 0

    @property
    def n(self) -> int:
        return int(self._counts.sum())

    def ks(self) -> float:
        """Two-sample KS distance between the live window and the reference (0 if empty)."""
        n = self.n
        if n == 0:
            return 0.0
        live_cdf = np.cumsum(self._counts[:-1]) / n
        return float(np.max(np.abs(live_cdf - self._reference_cdf)))
