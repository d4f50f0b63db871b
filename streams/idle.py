"""Idle entity states: which have had no event for longer than a TTL, in event time.

Each partition of ``events.raw`` has a clock: the newest event time applied on it. An entity
whose newest event time is more than the TTL behind its partition's clock is idle: its state is
dropped, and its next event starts afresh. Event time rather than wall time, so that the rule
depends only on the events and their order on the partition: the offline computation replays
the same events and expires the same states, a reprocessed batch expires what the first run did,
and the clock is recovered after a restart from the states themselves (the newest of them is
never idle). A partition that receives nothing has a clock that stands still, so its states
stay until its events move on: memory held by a silent partition is bounded by what it held
when it went quiet.

A worker that commits its input offsets (``committed``) evicts only states whose last applied
event is behind the committed offset of its partition: a worker killed after an eviction's
tombstone was written re-reads from that offset, and never re-applies one of the evicted
entity's events to a fresh state (its outputs were produced by the first run).

Whether a state is idle is decided when its entity's next event comes (:meth:`IdleExpiry.expired`,
one comparison), so the features never depend on when a sweep ran; :meth:`IdleExpiry.due`
sweeps the idle states out of memory, from the front of each partition's entities in the order
they last changed, and stops at the first one still live (so no sweep scans every state). A
live entity at the front may hold back idle ones behind it only until it goes idle itself, or
changes and moves to the back.

>>> idle = IdleExpiry(ttl_ms=100)
>>> idle.seen(0, "a", 1_000); idle.seen(0, "b", 1_050); idle.seen(1, "c", 5)
>>> idle.expired(0, 1_000), idle.due()
(False, [])
>>> idle.seen(0, "b", 1_150)
>>> idle.expired(0, 1_000), idle.due(), idle.clock
(True, [('a', 0)], {0: 1150, 1: 5})
>>> guarded = IdleExpiry(ttl_ms=100, committed={0: 7})
>>> guarded.seen(0, "a", 0, offset=7); guarded.seen(0, "b", 500, offset=8); guarded.due()
[]
>>> guarded.committed[0] = 9; guarded.due()
[('a', 0)]
>>> IdleExpiry(ttl_ms=0).expired(0, -10**12)  # a TTL of 0: never idle
False
"""

from __future__ import annotations

from collections.abc import Iterable


class IdleExpiry:
    """Per-partition event-time clocks and the entities in the order they last changed."""

    def __init__(self, ttl_ms: int, committed: dict[int, int] | None = None) -> None:
        """``committed``: partition -> the next offset to read after a restart, kept up to
        date by the worker (None: evict without that guard, as offline)."""
        if ttl_ms < 0:
            raise ValueError(f"an idle TTL is 0 (never) or a number of ms, got {ttl_ms}")
        self.ttl_ms = ttl_ms
        self.committed = committed
        self.clock: dict[int, int] = {}  # partition -> newest event time applied on it
        # partition -> entity -> (its newest event time, applied offset), oldest change first
        self._order: dict[int, dict[str, tuple[int, int]]] = {}

    def expired(self, partition: int, newest_ms: int) -> bool:
        """Whether a state whose newest event time is ``newest_ms`` is idle on ``partition``."""
        clock = self.clock.get(partition)
        return self.ttl_ms > 0 and clock is not None and clock - newest_ms > self.ttl_ms

    def seen(self, partition: int, entity: str, newest_ms: int, offset: int = -1) -> None:
        """An entity's state changed (or was recovered) with this newest event time and
        applied source offset."""
        order = self._order.get(partition)
        if order is None:
            order = self._order[partition] = {}
        order.pop(entity, None)  # moves it to the back
        order[entity] = (newest_ms, offset)
        if newest_ms > self.clock.get(partition, newest_ms - 1):
            self.clock[partition] = newest_ms

    def forget(self, partition: int, entity: str) -> None:
        """The entity's state was deleted (a tombstone recovered)."""
        order = self._order.get(partition)
        if order is not None:
            order.pop(entity, None)

    def drop(self, partitions: Iterable[int]) -> None:
        """Partitions no longer owned: their clocks and entities are forgotten."""
        for partition in partitions:
            self.clock.pop(partition, None)
            self._order.pop(partition, None)

    def due(self) -> list[tuple[str, int]]:
        """Remove and return (entity, partition) of the idle states at the front of each
        partition's order."""
        if self.ttl_ms <= 0:
            return []
        gone, committed = [], self.committed
        for partition, order in self._order.items():
            horizon = self.clock[partition] - self.ttl_ms
            safe = None if committed is None else committed.get(partition, 0)
            while order:
                entity, (newest, offset) = next(iter(order.items()))
                if newest >= horizon or (safe is not None and offset >= safe):
                    break
                del order[entity]
                gone.append((entity, partition))
        return gone

    def __len__(self) -> int:
        return sum(len(order) for order in self._order.values())
