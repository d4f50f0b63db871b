"""A feature set: declared once, computed by the same pure state object online and offline.

>>> from headwater.streams.feature_defs import Count, Mean, Ratio, LastValue
>>> from headwater.streams.windows import Window
>>> fs = FeatureSet("card", 1, "card_id", "dev.headwater.demo.Transaction", (
...     LastValue("amount"), Mean("amount", Window.sliding(60_000), name="mean_1m"),
...     Count(Window.sliding(60_000), name="n_1m"), Ratio("amount", "mean_1m")))
>>> state = fs.new_state()
>>> for t, amount in [(1_000, 10.0), (2_000, 30.0)]:
...     values = state.update(t, {"amount": amount}, {})
>>> values
{'amount': 30.0, 'mean_1m': 20.0, 'n_1m': 2.0, 'amount_per_mean_1m': 1.5}
>>> EntityState.from_bytes(fs, state.to_bytes()).read(2_000) == values
True
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import orjson

from headwater.streams.errors import FeatureSetError
from headwater.streams.feature_defs import (
    Aggregate,
    Cell,
    Feature,
    HistoryView,
    LastN,
    Ratio,
    Reader,
    Row,
)
from headwater.streams.native_features import native_reader
from headwater.streams.windows import Window

if TYPE_CHECKING:
    from headwater_native import FeatureReader


@dataclass(frozen=True)
class FeatureSet:
    """Name, version, entity key, source event type and features; ``grace_ms`` is how late
    (behind the entity's newest event time) an event may arrive and still be applied."""

    name: str
    version: int
    entity_key: str
    event_type: str
    features: tuple[Feature, ...]
    source: str = "events"
    grace_ms: int = 0
    missing: float = 0.0
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.version < 1:
            raise FeatureSetError(f"feature set {self.name!r} needs version >= 1")
        names = self.names
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise FeatureSetError(f"feature set {self.name!r} names {duplicated} twice")
        for feature in self.features:
            if isinstance(feature, Ratio):
                unknown = {feature.numerator, feature.denominator} - set(self._base_names)
                if unknown:
                    raise FeatureSetError(
                        f"Ratio in {self.name!r} refers to unknown features {sorted(unknown)}"
                    )

    @cached_property
    def _base_names(self) -> list[str]:
        return [n for f in self.features if not isinstance(f, Ratio) for n in f.names()]

    @cached_property
    def names(self) -> list[str]:
        """Every output name, in declaration order."""
        return [n for f in self.features for n in f.names()]

    @cached_property
    def plan(self) -> ReadPlan:
        """How :meth:`EntityState.read` computes the features, fastest first: windowed
        aggregates grouped by window (its bounds found once, each aggregate compiled to one
        function of the state's columns), the others, then ratios."""
        windows: dict[Window, list[tuple[str, Reader]]] = {}
        others, ratios = [], []
        for f in self.features:
            if isinstance(f, Ratio):
                ratios.append((f, f.names()[0]))
            elif isinstance(f, Aggregate):
                reader = f.compiled(self.columns)
                windows.setdefault(f.window, []).append((f.names()[0], reader))
            else:
                others.append((f, tuple(f.names())))
        return ReadPlan(list(windows.items()), others, ratios)

    @cached_property
    def columns(self) -> dict[str, int]:
        """The fields the features read, each with its position in a history row."""
        used = sorted({name for f in self.features for name in f.reads()})
        return {name: index for index, name in enumerate(used)}

    @cached_property
    def horizon_ms(self) -> int:
        """How far behind the newest event history must reach: longest window plus grace."""
        sizes = [f.window.size_ms for f in self.features if isinstance(f, Aggregate)]
        return max(sizes, default=0) + self.grace_ms

    @cached_property
    def keep_last(self) -> int:
        """Events always kept, whatever their age: last-N and time-since-last need them."""
        return max([f.n for f in self.features if isinstance(f, LastN)] + [2])

    @cached_property
    def native_reader(self) -> FeatureReader | None:
        """The native reader of the features (``headwater.streams.native_features``), if they have
        one."""
        return native_reader(self)

    def new_state(self) -> EntityState:
        return EntityState(self)

    def row_of(self, numeric: Mapping[str, float], categorical: Mapping[str, str]) -> Row:
        cells: list[float | str | None] = []
        for column in self.columns:
            value = numeric.get(column)
            cells.append(float(value) if value is not None else categorical.get(column))
        return tuple(cells)


@dataclass(frozen=True)
class ReadPlan:
    windowed: list[tuple[Window, list[tuple[str, Reader]]]]
    others: list[tuple[Feature, tuple[str, ...]]]
    ratios: list[tuple[Ratio, str]]


class EntityState:
    """One entity's history for one feature set: ``update`` with an event, ``read`` its values.

    ``update`` skips an event whose source offset was already applied (redelivery after a
    restart) and returns None for it and for an event later than the grace allows. History is
    kept by column (one list of cells per field read), so a window's values are one slice.
    """

    def __init__(self, feature_set: FeatureSet) -> None:
        self.feature_set = feature_set
        self._times: list[int] = []
        self._columns: dict[str, list[Cell]] = {name: [] for name in feature_set.columns}
        self._column_list = list(self._columns.values())  # the same lists, by column index
        self._newest = -1
        self._offset = -1
        self.events = 0

    @property
    def newest_time_ms(self) -> int:
        return self._newest

    @property
    def applied_offset(self) -> int:
        return self._offset

    def is_late(self, t: int) -> bool:
        return self._newest >= 0 and t < self._newest - self.feature_set.grace_ms

    def update(
        self,
        t: int,
        numeric: Mapping[str, float],
        categorical: Mapping[str, str],
        offset: int = -1,
    ) -> dict[str, float] | None:
        """Apply one event; its feature values as of its own time, or None if not applied."""
        if (offset >= 0 and offset <= self._offset) or self.is_late(t):
            return None
        row = self.feature_set.row_of(numeric, categorical)
        times = self._times
        if not times or t >= times[-1]:  # in order: the usual case
            times.append(t)
            for column, cell in zip(self._column_list, row, strict=True):
                column.append(cell)
        else:
            position = bisect_right(times, t)
            times.insert(position, t)
            for column, cell in zip(self._column_list, row, strict=True):
                column.insert(position, cell)
        self._newest = max(self._newest, t)
        self._offset = max(self._offset, offset)
        self.events += 1
        values = self.read(t)
        self._prune()
        return values

    def read(self, t: int) -> dict[str, float]:
        """The feature values as of time ``t`` (events with time <= t), in declaration order."""
        reader = self.feature_set.native_reader
        if reader is not None:
            values = reader.read(self._times, self._column_list, t, self.feature_set.missing)
            if values is not None:
                return values
        return self.read_in_python(t)

    def read_in_python(self, t: int) -> dict[str, float]:
        """:meth:`read` without the native reader: for features it does not cover, and the
        reference it is tested against."""
        fs = self.feature_set
        plan, times, columns, missing = fs.plan, self._times, self._columns, fs.missing
        high = len(times) if times and t >= times[-1] else bisect_right(times, t)
        values: dict[str, float] = {}
        column_list = self._column_list
        for window, readers in plan.windowed:
            low = bisect_left(times, window.start(t), 0, high)
            for name, reader in readers:
                values[name] = reader(column_list, low, high, missing)
        if plan.others:
            view = HistoryView(times, columns, missing, t)
            for feature, names in plan.others:
                computed = feature.compute(view)
                if len(names) == 1:
                    values[names[0]] = computed[0]
                else:
                    values.update(zip(names, computed, strict=True))
        for ratio, name in plan.ratios:
            values[name] = ratio.ratio(values, missing)
        return {name: values[name] for name in fs.names}

    def _prune(self) -> None:
        fs, times = self.feature_set, self._times
        oldest_kept = self._newest - fs.horizon_ms
        if not times or times[0] >= oldest_kept:
            return  # nothing is out of every window yet: the usual case
        old = bisect_right(times, oldest_kept - 1)
        drop = min(old, len(self._times) - fs.keep_last)
        if drop > 0:
            del self._times[:drop]
            for column in self._columns.values():
                del column[:drop]

    def to_bytes(self) -> bytes:
        """The changelog form of the state: JSON of the format version (2), times, one list of
        cells per column, newest time, applied offset and event count (floats round-trip
        exactly). Version 1 (rows of cells, no version number) is still read."""
        return orjson.dumps(
            [STATE_FORMAT, self._times, self._column_list, self._newest, self._offset, self.events]
        )

    @classmethod
    def from_bytes(cls, feature_set: FeatureSet, data: bytes) -> EntityState:
        decoded = orjson.loads(data)
        state = cls(feature_set)
        if decoded and isinstance(decoded[0], int):  # versioned: columns
            _, times, column_list, newest, offset, events = decoded
        else:  # version 1: rows
            times, rows, newest, offset, events = decoded
            column_list = [list(c) for c in zip(*rows, strict=True)] if rows else []
        if column_list:
            if len(column_list) != len(feature_set.columns):
                raise FeatureSetError(
                    f"a changelog state of {feature_set.name!r} has {len(column_list)} columns, "
                    f"the feature set reads {len(feature_set.columns)}: was it written by "
                    "another version of the feature set?"
                )
            state._columns = dict(zip(feature_set.columns, column_list, strict=True))
            state._column_list = list(state._columns.values())
        state._times = times
        state._newest, state._offset, state.events = newest, offset, events
        return state


STATE_FORMAT = 2
