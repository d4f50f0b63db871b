"""A Hystrix-style circuit breaker: stop calling a version that keeps failing, then probe it.

Closed, it counts outcomes in a rolling window; once the window holds at least
``volume_threshold`` calls and at least ``error_threshold`` of them failed, it opens. Open, it
refuses calls until ``sleep_window_s`` passed, then half-opens: one trial call goes through; its
success closes the breaker (with a fresh window), its failure opens it again.

>>> now = [0.0]
>>> breaker = CircuitBreaker(volume_threshold=4, clock=lambda: now[0])
>>> for ok in (True, False, False, True):
...     breaker.record(ok)
>>> breaker.state
'open'
>>> breaker.allow()
False
>>> now[0] = 5.0
>>> breaker.allow(), breaker.state, breaker.allow()
(True, 'half_open', False)
>>> breaker.record(True)
>>> breaker.state
'closed'
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Opens at ``error_threshold`` failures once ``volume_threshold`` calls fell in the last
    ``window_s`` seconds; half-opens after ``sleep_window_s``. Thread-safe."""

    def __init__(
        self,
        *,
        error_threshold: float = 0.5,
        volume_threshold: int = 20,
        window_s: float = 10.0,
        sleep_window_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.error_threshold = error_threshold
        self.volume_threshold = volume_threshold
        self.window_s = window_s
        self.sleep_window_s = sleep_window_s
        self.clock = clock
        self._state: BreakerState = "closed"
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> bool:
        """Whether a call may go to the version now (half-open lets exactly one through)."""
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "open":
                if self.clock() - self._opened_at < self.sleep_window_s:
                    return False
                self._state = "half_open"
                self._trial_in_flight = False
            if self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def record(self, ok: bool) -> None:
        """The outcome of a call that :meth:`allow` let through."""
        with self._lock:
            now = self.clock()
            if self._state == "open":
                return  # a late outcome of a call made before the breaker opened
            if self._state == "half_open":
                if ok:
                    self._close()
                else:
                    self._open(now)
                return
            self._outcomes.append((now, ok))
            self._failures += not ok
            self._expire(now)
            calls = len(self._outcomes)
            if calls >= self.volume_threshold and self._failures >= self.error_threshold * calls:
                self._open(now)

    def _expire(self, now: float) -> None:
        while self._outcomes and now - self._outcomes[0][0] >= self.window_s:
            _, ok = self._outcomes.popleft()
            self._failures -= not ok

    def _open(self, now: float) -> None:
        self._state = "open"
        self._opened_at = now
        self._trial_in_flight = False

    def _close(self) -> None:
        self._state = "closed"
        self._outcomes.clear()
        self._failures = 0
        self._trial_in_flight = False

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self._state!r}, calls={len(self._outcomes)})"
