"""The CPU a group of processes spends, read from ``/proc`` as any operator could.

A :class:`ProcessCost` follows root processes (the retrain worker, trial workers) and every
process below them. :meth:`ProcessCost.update` samples; :attr:`ProcessCost.cpu_s` is the CPU
seconds (user + system) the group has spent since it was first sampled: the roots' own time,
the time of the children they have already reaped (the kernel adds it to the parent), and the
time of the children still running. A child that exits unreaped between two samples is counted
at its last sample. Without ``/proc`` (not Linux) it reads nothing and stays at 0.

>>> import os
>>> cost = ProcessCost()
>>> cost.update([os.getpid()])
>>> sum(range(2_000_000)) > 0
True
>>> cost.update([os.getpid()])
>>> cost.cpu_s > 0
True
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class _Stat:
    ppid: int
    own_s: float  # utime + stime
    reaped_s: float  # cutime + cstime: children this process has waited for


def _stat(pid: int) -> _Stat | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    ticks = [int(f) for f in fields[11:15]]
    return _Stat(int(fields[1]), (ticks[0] + ticks[1]) / _TICKS, (ticks[2] + ticks[3]) / _TICKS)


def _children(pids: set[int]) -> dict[int, _Stat]:
    """Every process below ``pids`` (not the roots themselves), by pid."""
    stats = {}
    for entry in _PROC.glob("[0-9]*"):
        stat = _stat(int(entry.name))
        if stat is not None:
            stats[int(entry.name)] = stat
    below: dict[int, _Stat] = {}
    frontier = set(pids)
    while frontier:
        frontier = {pid for pid, s in stats.items() if s.ppid in frontier and pid not in below}
        below.update({pid: stats[pid] for pid in frontier})
    return below


class ProcessCost:
    """CPU seconds of some processes and all their descendants since the first sample."""

    def __init__(self) -> None:
        self._first: float | None = None
        self._roots: dict[int, float] = {}  # root pid -> own + reaped, last seen
        self._live: dict[int, float] = {}  # descendant pid -> own + reaped, last seen

    def update(self, roots: Iterable[int]) -> None:
        pids = set(roots)
        for pid in pids:
            stat = _stat(pid)
            if stat is not None:
                self._roots[pid] = stat.own_s + stat.reaped_s
        # a descendant that vanished was reaped (its time is now in its parent's) or exited
        # unwaited: either way it stops counting on its own
        below = _children(pids) if pids else {}
        self._live = {pid: s.own_s + s.reaped_s for pid, s in below.items()}
        if self._first is None:
            self._first = self._total()

    def _total(self) -> float:
        return sum(self._roots.values()) + sum(self._live.values())

    @property
    def cpu_s(self) -> float:
        return 0.0 if self._first is None else round(self._total() - self._first, 2)
