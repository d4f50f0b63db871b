"""A feature set's built-in features as the native reader's plan (``headwater_native``).

:class:`~headwater.streams.featureset.EntityState` reads an entity's features through
``headwater_native.FeatureReader`` when every feature of the set is one of the built-in kinds
(a subclass may compute differently, so only the exact types qualify) and the extension is
built: one call in place of a Python call per feature, the same values to the bit
(``tests/unit/test_native_features.py``). Anything else reads in Python.

>>> from headwater.streams.feature_defs import Count, LastValue, Ratio
>>> from headwater.streams.featureset import FeatureSet
>>> from headwater.streams.windows import Window
>>> fs = FeatureSet("f", 1, "id", "E", (LastValue("x"), Count(Window.sliding(1_000), name="n"),
...                                      Ratio("x", "n")))
>>> plan_of(fs)
([('sliding', 1000, 0)], [(0, 'last', 0), (1, 'aggregate', 'count', None, 0, None), \
(2, 'ratio', 0, 1)], ['x', 'n', 'x_per_n'])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater.streams.feature_defs import Aggregate, LastN, LastValue, Ratio, TimeSinceLast
from headwater.streams.windows import Window

if TYPE_CHECKING:
    from headwater.streams.featureset import FeatureSet

from headwater.schemas.avro_plan import NATIVE_BUILT

if NATIVE_BUILT:
    import headwater_native

BUILT_IN = (Aggregate, LastValue, LastN, TimeSinceLast, Ratio)


def plan_of(fs: FeatureSet) -> tuple[list[Any], list[Any], list[str]] | None:
    """(windows, features, output names); None if a feature is not a built-in kind."""
    if any(type(f) not in BUILT_IN for f in fs.features):
        return None
    columns = fs.columns
    outputs = {name: i for i, name in enumerate(fs.names)}
    windows: list[Window] = []
    features: list[Any] = []
    at = 0
    for f in fs.features:
        if isinstance(f, Aggregate):
            if f.window not in windows:
                windows.append(f.window)
            column = columns[f.field] if f.field else None
            where = (columns[f.where[0]], f.where[1]) if f.where else None
            features.append((at, "aggregate", f.how, column, windows.index(f.window), where))
        elif isinstance(f, LastValue):
            features.append((at, "last", columns[f.field]))
        elif isinstance(f, LastN):
            features.append((at, "last_n", columns[f.field], f.n))
        elif isinstance(f, TimeSinceLast):
            features.append((at, "since_last"))
        elif isinstance(f, Ratio):
            features.append((at, "ratio", outputs[f.numerator], outputs[f.denominator]))
        at += len(f.names())
    return [(w.kind, w.size_ms, w.hop_ms) for w in windows], features, fs.names


def native_reader(fs: FeatureSet) -> headwater_native.FeatureReader | None:
    """The compiled reader of ``fs``, or None where its features read in Python."""
    plan = plan_of(fs) if NATIVE_BUILT else None
    return headwater_native.FeatureReader(plan) if plan is not None else None
