"""From logged feature values to a model's input matrix, and back to the values it used.

A model reads its features by name, in its own order; a request may carry more. Missing or
non-finite values are refused naming the feature, never imputed silently.

>>> feature_matrix(("a", "b"), [{"b": 2.0, "a": 1.0, "extra": 9.0}]).tolist()
[[1.0, 2.0]]
>>> used_features(("a",), {"a": 1.0, "extra": 9.0})
{'a': 1.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from headwater.serving.errors import InvalidFeatures


def check_features(names: Sequence[str], values: Mapping[str, float]) -> None:
    """Raise :class:`InvalidFeatures` naming the first missing or non-finite feature."""
    for name in names:
        value = values.get(name)
        if value is None:
            known = ", ".join(sorted(values)) or "none"
            raise InvalidFeatures(f"feature {name!r} is missing (given: {known})")
        if not math.isfinite(value):
            raise InvalidFeatures(f"feature {name!r} is {value}, not a finite number")


def feature_matrix(names: Sequence[str], rows: Sequence[Mapping[str, float]]) -> np.ndarray:
    """One row per request, one column per model feature, in the model's order."""
    try:
        matrix = np.array([[row[name] for name in names] for row in rows], dtype=np.float64)
    except KeyError:
        for row in rows:
            check_features(names, row)
        raise
    if not np.all(np.isfinite(matrix)):
        for row in rows:
            check_features(names, row)
    return matrix.reshape(len(rows), len(names))


def used_features(names: Sequence[str], values: Mapping[str, float]) -> dict[str, float]:
    """The exact values a model read (logged with its prediction; training prefers them)."""
    return {name: float(values[name]) for name in names}
