"""Which consumed offsets may be committed: those whose every output the broker acknowledged.

The Kafka scorer does not wait for the broker after each micro-batch; it keeps consuming while
acknowledgements arrive. A :class:`DeliveryLedger` tracks each batch's outstanding sends and
releases the batches' offsets strictly in consumption order once all of a batch's sends (and
every earlier batch's) were acknowledged. A failed send stops the releases for good: the
process must restart from the last committed offsets, replaying rather than losing.

>>> ledger = DeliveryLedger()
>>> first = ledger.open({("features", 0): 10})
>>> second = ledger.open({("features", 0): 12})
>>> first.expect(2); second.expect(1)
>>> second.delivered(None)
>>> ledger.releasable()
[]
>>> first.delivered(None); first.delivered(None)
>>> ledger.releasable()
[{('features', 0): 10}, {('features', 0): 12}]
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping

Offsets = dict[tuple[str, int], int]  # (topic, partition) → next offset to consume


class DeliveryFailed(Exception):
    """A send of a batch failed; its offsets must never be committed."""


class BatchTicket:
    """One consumed batch: its next offsets and how many of its sends are unacknowledged."""

    def __init__(self, offsets: Mapping[tuple[str, int], int], lock: threading.Lock) -> None:
        self.offsets = dict(offsets)
        self.pending = 0
        self.failure = ""
        self._lock = lock

    def expect(self, count: int = 1) -> None:
        with self._lock:
            self.pending += count

    def delivered(self, error: str | None) -> None:
        """A send of this batch was acknowledged (``error`` None) or failed."""
        with self._lock:
            self.pending -= 1
            if error is not None and not self.failure:
                self.failure = error


class DeliveryLedger:
    """Batches in consumption order; :meth:`releasable` pops the finished head batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: deque[BatchTicket] = deque()

    def __len__(self) -> int:
        return len(self._batches)

    def open(self, offsets: Mapping[tuple[str, int], int]) -> BatchTicket:
        ticket = BatchTicket(offsets, self._lock)
        with self._lock:
            self._batches.append(ticket)
        return ticket

    def releasable(self) -> list[Offsets]:
        """Offsets of the finished batches at the head, in order; raises on a failed send."""
        released: list[Offsets] = []
        with self._lock:
            while self._batches and self._batches[0].pending == 0:
                head = self._batches[0]
                if head.failure:
                    raise DeliveryFailed(head.failure)
                released.append(self._batches.popleft().offsets)
        return released
