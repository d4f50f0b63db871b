"""A bulkhead: at most ``limit`` calls of one model version run at once; the next is refused.

Refusing (instead of queueing) is the point: a version whose calls hang fills its own slots and
no one else's, and callers fall back at once instead of piling up behind it.

>>> bulkhead = Bulkhead(limit=1)
>>> bulkhead.try_acquire(), bulkhead.try_acquire(), bulkhead.in_use
(True, False, 1)
>>> bulkhead.release()
>>> bulkhead.try_acquire()
True
"""

from __future__ import annotations

import threading


class Bulkhead:
    """Bounded concurrency without waiting: :meth:`try_acquire` says yes or no at once."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a bulkhead needs a limit of at least 1, got {limit}")
        self.limit = limit
        self._in_use = 0
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        return self._in_use

    def try_acquire(self) -> bool:
        with self._lock:
            if self._in_use >= self.limit:
                return False
            self._in_use += 1
            return True

    def release(self) -> None:
        with self._lock:
            if self._in_use == 0:
                raise RuntimeError("bulkhead released more often than acquired")
            self._in_use -= 1
