"""Thresholds of the drift statistics under "no change", so false alarms come at a known rate.

Every windowed test in :mod:`headwater.loop` closes one window of ``n`` live events and compares it
with a reference of ``m`` training values. Under a stationary stream its statistic follows a known
null distribution; the threshold is that distribution's ``1 - alpha`` quantile, so one window
alarms falsely with probability ``alpha`` and the expected number of events between false alarms
is ``n / alpha`` (per feature and statistic).

>>> round(chi2_quantile(0.999, 9))  # tables: 27.88
28
>>> round(ks_critical(0.001, 500, 10_000), 4)
0.0893
>>> round(events_between_false_alarms(500, 1e-4))
5000000
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist


@lru_cache(maxsize=1024)  # windows repeat the same (p, dof): compute once
def chi2_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of χ² with ``dof`` degrees of freedom (Wilson–Hilferty; within 1% of
    the exact value for dof ≥ 3 and the tail probabilities used here)."""
    if not 0.0 < p < 1.0 or dof < 1:
        raise ValueError(f"chi2_quantile needs 0 < p < 1 and dof ≥ 1, got p={p}, dof={dof}")
    z = NormalDist().inv_cdf(p)
    h = 2.0 / (9.0 * dof)
    return float(dof * (1.0 - h + z * math.sqrt(h)) ** 3)


def psi_threshold(alpha: float, bins: int, n: int, m: int) -> float:
    """Null quantile of PSI between ``n`` live and ``m`` reference values over ``bins`` bins.

    To second order PSI is Pearson's χ² divided by the effective sample size, so under "no
    change" ``PSI · nm/(n+m)`` follows χ²(bins − 1)."""
    return chi2_quantile(1.0 - alpha, bins - 1) * (1.0 / n + 1.0 / m)


def jsd_threshold(alpha: float, bins: int, n: int, m: int) -> float:
    """Null quantile of the Jensen–Shannon divergence (nats): a quarter of PSI's (JSD ≈ PSI/4
    for small differences, since each half compares against the midpoint)."""
    return psi_threshold(alpha, bins, n, m) / 4.0


def ks_critical(alpha: float, n: int, m: int) -> float:
    """Critical value of the two-sample Kolmogorov–Smirnov statistic (asymptotic)."""
    return math.sqrt(-math.log(alpha / 2.0) / 2.0) * math.sqrt((n + m) / (n * m))


@lru_cache(maxsize=4096)  # every window of a monitor has the same sizes: computed once
def window_thresholds(alpha: float, bins: int, n: int, m: int) -> tuple[float, float, float]:
    """The PSI, Jensen–Shannon and Kolmogorov–Smirnov thresholds of one feature's window.

    >>> psi, jsd, ks = window_thresholds(1e-4, 10, 500, 10_000)
    >>> psi == psi_threshold(1e-4, 10, 500, 10_000), jsd == psi / 4.0
    (True, True)
    """
    psi = psi_threshold(alpha, bins, n, m)
    return psi, psi / 4.0, ks_critical(alpha, n, m)


def events_between_false_alarms(window: int, alpha: float) -> float:
    """Expected events between false alarms of one windowed test on a stationary stream."""
    return window / alpha
