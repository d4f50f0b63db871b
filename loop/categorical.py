"""Counts of one categorical feature, with Pearson's χ² and the L∞ distance to a reference.

Categories the reference never saw are pooled in one "unseen" cell whose expected share is a
small floor, so a brand-new category shows up as drift instead of a division by zero.

>>> sketch = CategoricalSketch({"pos": 0.7, "web": 0.3}, reference_size=10_000)
>>> sketch.update_many(["pos"] * 70 + ["web"] * 30)
>>> sketch.chi2() < 1.0, round(sketch.linf(), 2)
(True, 0.0)
>>> sketch.reset(); sketch.update_many(["pos"] * 30 + ["web"] * 50 + ["atm"] * 20)
>>> sketch.chi2() > sketch.threshold(alpha=1e-4), round(sketch.linf(), 2)
(True, 0.4)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from typing import Generic, TypeVar

from headwater.loop.calibration import chi2_quantile

UNSEEN = "<unseen>"
# Expected share of categories the reference never saw.
UNSEEN_FLOOR = 1e-4

K = TypeVar("K", bound=Hashable)


class CategoricalSketch(Generic[K]):
    """Live counts of a categorical feature against the reference's category shares."""

    def __init__(self, reference: Mapping[K, float], reference_size: int) -> None:
        total = sum(reference.values())
        if total <= 0:
            raise ValueError("a categorical reference needs positive shares")
        self.reference = {k: v / total for k, v in reference.items()}
        self.reference_size = reference_size
        self._counts: Counter[Hashable] = Counter()

    def update(self, value: K) -> None:
        self._counts[value if value in self.reference else UNSEEN] += 1

    def update_many(self, values: Iterable[K]) -> None:
        for value in values:
            self.update(value)

    def reset(self) -> None:
        self._counts.clear()

    @property
    def n(self) -> int:
        return sum(self._counts.values())

    def _cells(self) -> list[tuple[int, float]]:
        cells = [(self._counts.get(k, 0), q) for k, q in self.reference.items()]
        return [*cells, (self._counts.get(UNSEEN, 0), UNSEEN_FLOOR)]

    def chi2(self) -> float:
        """Pearson's χ² of the live counts against the reference shares."""
        n = self.n
        if n == 0:
            return 0.0
        return sum((observed - n * q) ** 2 / (n * q) for observed, q in self._cells())

    def linf(self) -> float:
        """The largest difference of one category's share."""
        n = self.n
        if n == 0:
            return 0.0
        return max(abs(observed / n - q) for observed, q in self._cells())

    def threshold(self, alpha: float) -> float:
        """χ² null quantile, widened for the reference's own sampling error."""
        dof = max(len(self.reference), 1)  # the categories plus the "unseen" cell, minus one
        return chi2_quantile(1.0 - alpha, dof) * (1.0 + self.n / self.reference_size)
