"""The features a feature set can declare: windowed aggregates, last values, recency, ratios.

Each feature reads an entity's history — event times in order and one row of field values per
event — as of one event's time, and returns its value(s). Nothing here knows about Kafka or
ClickHouse: the online worker and the offline path call exactly these methods.

>>> from headwater.streams.windows import Window
>>> times, amounts = [1_000, 2_000, 5_000], [2.0, 4.0, 9.0]
>>> view = HistoryView(times, {"amount": amounts}, 0.0, t=5_000)
>>> Mean("amount", Window.sliding(4_000)).compute(view), TimeSinceLast().compute(view)
([6.5], [3.0])
>>> Count(Window.tumbling(10_000)).compute(HistoryView(times, {"amount": amounts}, 0.0, 2_000))
[2.0]
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from headwater.streams.errors import FeatureSetError
from headwater.streams.windows import Window

Cell = float | str | None
Row = tuple[Cell, ...]


class HistoryView:
    """An entity's retained history as of time ``t``: event times ascending, one column of
    cells per field the features read, and ``high``, the index after the last event with time
    ``<= t``. Window bounds are found once per window and shared by the features that use it."""

    __slots__ = ("_lows", "columns", "high", "missing", "t", "times")

    def __init__(
        self, times: Sequence[int], columns: Mapping[str, Sequence[Cell]], missing: float, t: int
    ) -> None:
        self.times, self.columns, self.missing, self.t = times, columns, missing, t
        self.high = bisect_right(times, t)
        self._lows: dict[Window, int] = {}

    def low(self, window: Window) -> int:
        """The index of the window's first event."""
        found = self._lows.get(window)
        if found is None:
            found = self._lows[window] = bisect_left(self.times, window.start(self.t), 0, self.high)
        return found

    def cells(self, field: str, window: Window) -> Sequence[Cell]:
        """The field's cells of the events in the window, oldest first."""
        return self.columns[field][self.low(window) : self.high]


class Feature:
    """Base of every feature: its output names, the fields it reads, how it computes."""

    def names(self) -> list[str]:
        raise FeatureSetError(f"{type(self).__name__} does not name its outputs")

    def reads(self) -> tuple[str, ...]:
        return ()

    def reads_numbers(self) -> tuple[str, ...]:
        """The fields it reads as numbers: the domain must declare them numeric."""
        return ()

    def compute(self, view: HistoryView) -> list[float]:
        """Values as of ``view.t``, from the events before ``view.high``."""
        raise FeatureSetError(f"{type(self).__name__} cannot be computed from history")


Aggregation = Literal["count", "sum", "mean", "min", "max", "stddev", "distinct"]


def _aggregate(how: Aggregation, values: Sequence[float], missing: float) -> float:
    if how == "sum":
        return math.fsum(values)
    if not values:
        return missing
    if how == "mean":
        return math.fsum(values) / len(values)
    if how == "min":
        return min(values)
    if how == "max":
        return max(values)
    mean = math.fsum(values) / len(values)
    # (v - mean) * (v - mean), not ** 2: one correctly rounded product, as the native reader
    # computes it (libm's pow may round differently in the last bit).
    return math.sqrt(math.fsum([(v - mean) * (v - mean) for v in values]) / len(values))


@dataclass(frozen=True)
class Aggregate(Feature):
    """``how`` of ``field`` over ``window``; ``where`` keeps events whose field equals a value."""

    how: Aggregation
    field: str
    window: Window
    name: str = ""
    where: tuple[str, str] | None = None

    def names(self) -> list[str]:
        if self.name:
            return [self.name]
        subject = self.field or "events"
        if self.where:
            subject += f"_{self.where[0]}_{self.where[1]}"
        return [f"{subject}_{self.how}_{self.window.label}"]

    def reads(self) -> tuple[str, ...]:
        return tuple(f for f in (self.field, self.where[0] if self.where else "") if f)

    def reads_numbers(self) -> tuple[str, ...]:
        return () if self.how in ("count", "distinct") else (self.field,)

    def compute(self, view: HistoryView) -> list[float]:
        return [self.over(view.columns, view.low(self.window), view.high, view.missing)]

    def over(
        self, columns: Mapping[str, Sequence[Cell]], low: int, high: int, missing: float
    ) -> float:
        """The value over the events ``low:high`` (the window's, found by the caller)."""
        index = {name: i for i, name in enumerate(columns)}
        return self.compiled(index)(list(columns.values()), low, high, missing)

    def compiled(self, index: Mapping[str, int]) -> Reader:
        """This aggregate as one function of (columns, low, high, missing), the columns in
        ``index`` order: what :meth:`over` computes, without re-reading the declaration for
        every event (the online worker runs it on each of them)."""
        how, fsum = self.how, math.fsum
        if self.where:
            j, wanted = index[self.where[0]], self.where[1]
            if how == "count":
                return lambda cols, low, high, missing: float(cols[j][low:high].count(wanted))
            k = index[self.field]

            def matching(cols: Columns, low: int, high: int) -> Sequence[Cell]:
                keep = cols[j][low:high]
                return [c for c, w in zip(cols[k][low:high], keep, strict=True) if w == wanted]

        elif how == "count":
            return lambda cols, low, high, missing: float(high - low)
        else:
            k = index[self.field]

            def matching(cols: Columns, low: int, high: int) -> Sequence[Cell]:
                return cols[k][low:high]

        if how == "distinct":

            def distinct(cols: Columns, low: int, high: int, missing: float) -> float:
                found = set(matching(cols, low, high))
                found.discard(None)
                return float(len(found))

            return distinct
        if how == "sum" and not self.where:
            return lambda cols, low, high, missing: fsum(_numbers(cols[k][low:high]))

        def aggregate(cols: Columns, low: int, high: int, missing: float) -> float:
            return _aggregate(how, _numbers(matching(cols, low, high)), missing)

        return aggregate


Columns = Sequence[Sequence[Cell]]
Reader = Callable[[Columns, int, int, float], float]


def _numbers(cells: Sequence[Cell]) -> Sequence[float]:
    """A numeric column's cells without the None of events that lacked the field."""
    kept = [c for c in cells if c is not None] if None in cells else cells
    return cast(Sequence[float], kept)


def Count(window: Window, *, name: str = "", where: tuple[str, str] | None = None) -> Aggregate:
    """Number of events in the window (optionally only those ``where`` field == value)."""
    return Aggregate("count", "", window, name, where)


def Sum(field: str, window: Window, *, name: str = "") -> Aggregate:
    """Sum of the numeric field over the window (0 when it holds no event)."""
    return Aggregate("sum", field, window, name)


def Mean(field: str, window: Window, *, name: str = "") -> Aggregate:
    """Mean of the numeric field over the window."""
    return Aggregate("mean", field, window, name)


def Min(field: str, window: Window, *, name: str = "") -> Aggregate:
    """Smallest value of the numeric field in the window."""
    return Aggregate("min", field, window, name)


def Max(field: str, window: Window, *, name: str = "") -> Aggregate:
    """Largest value of the numeric field in the window."""
    return Aggregate("max", field, window, name)


def StdDev(field: str, window: Window, *, name: str = "") -> Aggregate:
    """Population standard deviation (0 for a single event)."""
    return Aggregate("stddev", field, window, name)


def CountDistinct(field: str, window: Window, *, name: str = "") -> Aggregate:
    """Number of distinct values of a (usually categorical) field in the window."""
    return Aggregate("distinct", field, window, name)


@dataclass(frozen=True)
class LastValue(Feature):
    """The numeric field's value in the latest event at or before ``t`` (the event itself)."""

    field: str
    name: str = ""

    def names(self) -> list[str]:
        return [self.name or self.field]

    def reads(self) -> tuple[str, ...]:
        return (self.field,)

    def reads_numbers(self) -> tuple[str, ...]:
        return (self.field,)

    def compute(self, view: HistoryView) -> list[float]:
        value = view.columns[self.field][view.high - 1] if view.high else None
        return [value if isinstance(value, float) else view.missing]


@dataclass(frozen=True)
class LastN(Feature):
    """The last ``n`` values of a numeric field, newest first (``name_1`` is the event's own)."""

    field: str
    n: int
    name: str = ""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise FeatureSetError(f"LastN({self.field!r}) needs n >= 1, got {self.n}")

    def names(self) -> list[str]:
        base = self.name or f"{self.field}_last"
        return [f"{base}_{k}" for k in range(1, self.n + 1)]

    def reads(self) -> tuple[str, ...]:
        return (self.field,)

    def reads_numbers(self) -> tuple[str, ...]:
        return (self.field,)

    def compute(self, view: HistoryView) -> list[float]:
        column, missing = view.columns[self.field], view.missing
        out = []
        for index in range(view.high - 1, view.high - 1 - self.n, -1):
            value = column[index] if index >= 0 else None
            out.append(value if isinstance(value, float) else missing)
        return out


@dataclass(frozen=True)
class TimeSinceLast(Feature):
    """Seconds since the entity's previous event (at or before ``t``)."""

    name: str = "seconds_since_last_event"

    def names(self) -> list[str]:
        return [self.name]

    def compute(self, view: HistoryView) -> list[float]:
        if view.high < 2:
            return [view.missing]
        return [(view.t - view.times[view.high - 2]) / 1000.0]


@dataclass(frozen=True)
class Ratio(Feature):
    """``numerator / denominator`` of two other features of the set (missing if the latter is 0)."""

    numerator: str
    denominator: str
    name: str = ""

    def names(self) -> list[str]:
        return [self.name or f"{self.numerator}_per_{self.denominator}"]

    def ratio(self, values: Mapping[str, float], missing: float) -> float:
        below = values[self.denominator]
        return values[self.numerator] / below if below else missing
