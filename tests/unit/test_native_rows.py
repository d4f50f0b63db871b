"""The native window reader (``headwater_native.RowMatrix``) gives exactly Python's matrix: rows
in one order or many, missing and extra keys, ints, NaN and infinities, mappings that are not
dicts, None; and a value that is not a number is refused with the feature's name."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import pytest

from headwater.loop.drift_monitor import DriftMonitor, FeatureReference, python_matrix
from headwater.schemas.avro_plan import NATIVE_BUILT

if not NATIVE_BUILT:  # a failure, not a skip: the drift monitor would silently run slower
    raise RuntimeError("headwater_native is not built: run scripts/install.sh")

from headwater_native import RowMatrix

NAMES = ["amount", "hour", "count_1h", "ratio", "é_unicode"]


def _random_rows(rng: random.Random, n: int) -> list[Mapping[str, float]]:
    special: list[float | None] = [math.nan, math.inf, -math.inf, 0.0, -0.0, None]
    base_order = [*NAMES, "not_monitored"]
    rows: list[Mapping[str, float]] = []
    for _ in range(n):
        order = list(base_order)
        if rng.random() < 0.2:  # another layout
            rng.shuffle(order)
        row: dict[str, float | None] = {}
        for name in order:
            if rng.random() < 0.1:
                continue  # a missing feature
            if rng.random() < 0.1:
                row[name] = rng.choice(special)
            elif rng.random() < 0.1:
                row[name] = rng.randint(-5, 5)  # an int is a number too
            else:
                row[name] = rng.gauss(0, 100)
        rows.append(MappingProxyType(row) if rng.random() < 0.05 else row)  # type: ignore[arg-type]
    return rows


def _python(rows: list[Mapping[str, float]], names: list[str]) -> np.ndarray:
    return python_matrix(rows, names)


def _native(reader: RowMatrix, rows: list[Mapping[str, float]]) -> np.ndarray:
    cells = np.frombuffer(reader.build(rows), dtype=np.float64)
    return cells.reshape(len(reader.names), len(rows)).T  # column after column


@pytest.mark.parametrize("seed", range(10))
def test_the_native_matrix_equals_pythons(seed: int) -> None:
    rng = random.Random(seed)
    reader = RowMatrix(NAMES)
    for _ in range(5):  # the reader keeps a layout between calls
        rows = _random_rows(rng, rng.randint(0, 200))
        np.testing.assert_array_equal(_native(reader, rows), _python(rows, NAMES))


def test_rows_of_one_layout_and_keys_that_only_look_alike() -> None:
    reader = RowMatrix(["a", "b"])
    rows: list[Mapping[str, float]] = [
        {"a": 1.0, "b": 2.0},
        {"a": 3.0, "b": 4.0},  # the layout of the row before
        {"a": 5.0, "bb": 6.0},  # same length, another key
        {"b": 7.0, "a": 8.0},  # same keys, another order
        {"a": 9.0},
        {},
    ]
    expected = [[1, 2], [3, 4], [5, math.nan], [8, 7], [9, math.nan], [math.nan, math.nan]]
    np.testing.assert_array_equal(_native(reader, rows), np.array(expected, dtype=np.float64))


def test_a_key_that_is_not_a_string_is_no_feature() -> None:
    reader = RowMatrix(["a"])
    rows: list[Mapping[str, float]] = [
        {"a": 1.0, 7: 2.0},  # type: ignore[dict-item]
        {"a": 3.0, 7: 4.0},  # type: ignore[dict-item]
        {"a": 5.0, "b": 6.0},
        {"a": 7.0, 8: 8.0},  # type: ignore[dict-item]  # where the layout has a name
    ]
    expected = np.array([[1.0], [3.0], [5.0], [7.0]])
    np.testing.assert_array_equal(_native(reader, rows), expected)


def test_a_value_that_is_no_number_is_refused_by_name() -> None:
    reader = RowMatrix(["amount"])
    with pytest.raises(TypeError, match='feature "amount": expected a number, got str'):
        reader.build([{"amount": "12"}])
    with pytest.raises(TypeError, match='feature "amount": expected a number, got list'):
        reader.build([MappingProxyType({"amount": [1.0]})])


def test_the_monitor_alarms_alike_on_either_reader() -> None:
    rng = np.random.default_rng(5)
    refs = {name: FeatureReference.from_sample(name, rng.normal(0, 1, 2000)) for name in NAMES}
    live = [
        {name: float(rng.normal(1.0 if name == "hour" else 0.0, 1)) for name in NAMES}
        for _ in range(1000)
    ]
    native = DriftMonitor("m", 1, refs, window=250)
    python = DriftMonitor("m", 1, refs, window=250)
    python._native = None  # the reader used where headwater_native is not built
    for t, row in enumerate(live):
        assert native.update(row, t) == python.update(row, t)
    assert native.last_window == python.last_window
    assert any(test.value > test.threshold for test in native.last_window)
