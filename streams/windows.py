"""Event-time windows: which past events a windowed feature sees at an event's time ``t``.

Every window is read "as of" the event's own time: it covers the events with time ``<= t``
from :meth:`Window.start` on.

* tumbling(size): the fixed window ``[t - t % size, t]`` — resets at each boundary.
* hopping(size, hop): the oldest of the overlapping windows (starting every ``hop``) that
  contains ``t`` — the sliding window rounded to hop boundaries.
* sliding(size): the last ``size`` milliseconds, ``(t - size, t]``.

>>> Window.tumbling(60_000).start(125_000), Window.sliding(60_000).start(125_000)
(120000, 65001)
>>> Window.hopping(60_000, 20_000).start(125_000), Window.hopping(60_000, 20_000).label
(80000, '1m_hop20s')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from headwater.streams.errors import FeatureSetError

_UNITS = ((86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s"), (1, "ms"))


def duration_label(ms: int) -> str:
    """``3600000`` → ``"1h"``: the largest unit that divides the duration."""
    for size, unit in _UNITS:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


@dataclass(frozen=True)
class Window:
    """An event-time window of one of the three kinds."""

    kind: Literal["tumbling", "hopping", "sliding"]
    size_ms: int
    hop_ms: int = 0
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __hash__(self) -> int:  # computed once: windows key the per-read bounds cache
        return self._hash

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.kind, self.size_ms, self.hop_ms)))
        if self.size_ms <= 0:
            raise FeatureSetError(f"a {self.kind} window needs a positive size, got {self.size_ms}")
        if self.kind == "hopping" and not 0 < self.hop_ms <= self.size_ms:
            raise FeatureSetError(
                f"a hopping window's hop must be in (0, size={self.size_ms}], got {self.hop_ms}"
            )

    @classmethod
    def tumbling(cls, size_ms: int) -> Window:
        return cls("tumbling", size_ms)

    @classmethod
    def hopping(cls, size_ms: int, hop_ms: int) -> Window:
        return cls("hopping", size_ms, hop_ms)

    @classmethod
    def sliding(cls, size_ms: int) -> Window:
        return cls("sliding", size_ms)

    def start(self, t: int) -> int:
        """The earliest event time (inclusive) the window holds at time ``t``."""
        if self.kind == "tumbling":
            return t - t % self.size_ms
        if self.kind == "hopping":
            return ((t - self.size_ms) // self.hop_ms + 1) * self.hop_ms
        return t - self.size_ms + 1

    @property
    def label(self) -> str:
        size = duration_label(self.size_ms)
        if self.kind == "hopping":
            return f"{size}_hop{duration_label(self.hop_ms)}"
        return size if self.kind == "sliding" else f"{size}_tumbling"
