"""Adaptive micro-batching: how many requests to score together, and when to stop waiting.

Like BentoML's adaptive batching, the policy learns the cost of a batch as ``fixed + per_item *
size`` from the batches it sees (exponentially weighted), and the gap between arrivals. It
dispatches when the batch is full, when waiting any longer would push the oldest request past
``max_latency_s``, or when the next arrival is not expected before that deadline (so a lone
request at low load is never held back for nothing). The batch limit shrinks when a batch of
``max_batch_size`` would itself take more than half the latency budget.

>>> now = [0.0]
>>> policy = BatchPolicy(max_batch_size=8, max_latency_s=0.010, clock=lambda: now[0])
>>> policy.should_dispatch(queued=8, oldest_at=0.0)
True
>>> policy.should_dispatch(queued=1, oldest_at=0.0)  # nothing known of arrivals yet: go
True
>>> for _ in range(20):
...     policy.arrived(); now[0] += 0.0005
>>> policy.should_dispatch(queued=2, oldest_at=now[0])  # arrivals are frequent: wait a bit
False
>>> now[0] += 0.011
>>> policy.should_dispatch(queued=2, oldest_at=now[0] - 0.011)  # past the budget: go
True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class BatchPolicy:
    """Size and latency bounds of micro-batches, adapted to the observed costs. Not thread-safe:
    one batching loop owns it."""

    def __init__(
        self,
        *,
        max_batch_size: int = 64,
        max_latency_s: float = 0.010,
        smoothing: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch_size < 1 or max_latency_s <= 0:
            raise ValueError("a batch policy needs max_batch_size >= 1 and max_latency_s > 0")
        self.max_batch_size = max_batch_size
        self.max_latency_s = max_latency_s
        self.smoothing = smoothing
        self.clock = clock
        self._fixed_s = 0.0
        self._per_item_s = 0.0
        self._moments: tuple[float, float, float, float] | None = None  # E[n] E[t] E[n²] E[nt]
        self._backlogged = False
        self._gap_s = math.inf  # expected time between arrivals
        self._last_arrival: float | None = None

    @property
    def batch_limit(self) -> int:
        """The largest batch whose per-item work fits in half of the latency budget; after a
        full batch (requests are queueing) the largest allowed. The fixed cost is left out on
        purpose: it is paid once per batch whatever its size, so shrinking batches because of
        it would only pay it more often and let a backlog grow."""
        if self._per_item_s <= 0 or self._backlogged:
            return self.max_batch_size
        fits = int(self.max_latency_s / 2 / self._per_item_s + 1e-9)
        return max(1, min(self.max_batch_size, fits))

    def expected_cost(self, size: int) -> float:
        return self._fixed_s + self._per_item_s * size

    def arrived(self, count: int = 1) -> None:
        """Note ``count`` requests arriving now."""
        now = self.clock()
        if self._last_arrival is not None and count > 0:
            gap = (now - self._last_arrival) / count
            self._gap_s = gap if math.isinf(self._gap_s) else self._ewma(self._gap_s, gap)
        self._last_arrival = now

    def observed(self, size: int, seconds: float) -> None:
        """Note that a batch of ``size`` took ``seconds`` to score."""
        if size <= 0:
            return
        self._backlogged = size >= self.batch_limit
        # Cost = fixed + per_item × size, fitted by least squares on weighted moments.
        sample = (float(size), seconds, float(size * size), size * seconds)
        old = sample if self._moments is None else self._moments
        a = self.smoothing
        mean_n, mean_t, mean_nn, mean_nt = (
            m + a * (x - m) for m, x in zip(old, sample, strict=True)
        )
        self._moments = (mean_n, mean_t, mean_nn, mean_nt)
        spread = mean_nn - mean_n * mean_n
        if spread > 1e-6:
            self._per_item_s = max(0.0, (mean_nt - mean_n * mean_t) / spread)
            self._fixed_s = max(0.0, mean_t - self._per_item_s * mean_n)
        elif self._per_item_s == 0.0:  # one size seen so far: split the cost evenly
            self._fixed_s = mean_t / 2
            self._per_item_s = mean_t / 2 / mean_n

    def should_dispatch(self, queued: int, oldest_at: float) -> bool:
        """Whether the ``queued`` requests (the oldest arrived at ``oldest_at``) go now."""
        if queued <= 0:
            return False
        if queued >= self.batch_limit:
            return True
        waited = self.clock() - oldest_at
        deadline_left = self.max_latency_s - waited - self.expected_cost(queued + 1)
        return deadline_left <= 0 or self._gap_s >= deadline_left

    def wait_s(self, oldest_at: float, queued: int) -> float:
        """How long a batching loop may sleep before it must look again."""
        left = self.max_latency_s - (self.clock() - oldest_at) - self.expected_cost(queued + 1)
        return max(0.0, min(left, self._gap_s))

    def _ewma(self, old: float, new: float) -> float:
        return old + self.smoothing * (new - old) if old else new
