"""An always-valid sequential comparison of two streams' mean losses: the mixture sequential
probability ratio test (mSPRT, Johari et al. 2017) with a normal mixture over the difference.

With ``d`` the difference of means (B − A), ``V = s²_A/n_A + s²_B/n_B`` its variance and a
mixing prior N(θ₀, τ²), the mixture likelihood ratio against "the difference is θ₀" is
``Λ = √(V/(V+τ²)) · exp(τ²(d−θ₀)² / (2V(V+τ²)))``. Rejecting when Λ ≥ 1/α keeps the
probability of *ever* rejecting a true θ₀ below α, however often one looks — which is what
lets a canary controller check after every labelled outcome.

>>> import random
>>> rng = random.Random(0)
>>> test = MeanComparison()
>>> for _ in range(400):
...     test.update_a(float(rng.random() < 0.30)); test.update_b(float(rng.random() < 0.10))
>>> test.difference < 0, test.likelihood_ratio(0.0) > 1 / 0.05
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class _Moments:
    """Welford's running mean and variance."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def update(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    @property
    def variance(self) -> float:
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0


class MeanComparison:
    """Two streams of losses, A (the baseline) and B (the challenger), compared by mSPRT."""

    def __init__(self, tau: float = 0.05, variance_floor: float = 1e-4) -> None:
        self.tau = tau
        self.variance_floor = variance_floor
        self._a = _Moments()
        self._b = _Moments()

    def update_a(self, loss: float) -> None:
        self._a.update(loss)

    def update_b(self, loss: float) -> None:
        self._b.update(loss)

    @property
    def n_a(self) -> int:
        return self._a.n

    @property
    def n_b(self) -> int:
        return self._b.n

    @property
    def mean_a(self) -> float:
        return self._a.mean

    @property
    def mean_b(self) -> float:
        return self._b.mean

    @property
    def difference(self) -> float:
        """Mean loss of B minus mean loss of A: negative when B is better."""
        return self._b.mean - self._a.mean

    def _variance(self) -> float:
        if self._a.n < 2 or self._b.n < 2:
            return math.inf
        va = max(self._a.variance, self.variance_floor)
        vb = max(self._b.variance, self.variance_floor)
        return va / self._a.n + vb / self._b.n

    def likelihood_ratio(self, theta0: float) -> float:
        """Evidence against "B − A = θ₀" (≥ 1/α rejects it at level α)."""
        v = self._variance()
        if math.isinf(v):
            return 0.0
        tau2 = self.tau * self.tau
        exponent = tau2 * (self.difference - theta0) ** 2 / (2.0 * v * (v + tau2))
        return math.sqrt(v / (v + tau2)) * math.exp(min(exponent, 700.0))
