"""The all-features bin counting of the numeric block against one ``searchsorted`` per feature:
NaN, ±inf, values on edges, repeated edges, strict and non-strict CDFs, features without edges."""

from __future__ import annotations

import numpy as np
import pytest

from headwater.loop.numeric_block import _Edges, _keys


def _one_feature_at_a_time(
    window: np.ndarray, edges: list[np.ndarray], strict: np.ndarray
) -> np.ndarray:
    slots = max(e.size for e in edges) + 1
    counts = np.zeros((len(edges), slots), dtype=np.int64)
    for j, feature_edges in enumerate(edges):
        column = window[:, j][~np.isnan(window[:, j])]
        index = np.searchsorted(feature_edges, column, side="right" if strict[j] else "left")
        counts[j, : feature_edges.size + 1] = np.bincount(index, minlength=feature_edges.size + 1)
    return counts


@pytest.mark.parametrize("seed", range(20))
def test_counts_equal_one_searchsorted_per_feature(seed: int) -> None:
    rng = np.random.default_rng(seed)
    features, rows = int(rng.integers(1, 8)), int(rng.integers(1, 300))
    window = rng.integers(-5, 6, size=(rows, features)).astype(np.float64)  # ties on edges
    window[rng.random(window.shape) < 0.1] = np.nan
    window[rng.random(window.shape) < 0.03] = np.inf
    window[rng.random(window.shape) < 0.03] = -np.inf
    edges = [
        np.sort(rng.integers(-4, 5, size=int(rng.integers(0, 12))).astype(np.float64))
        for _ in range(features)
    ]
    edges[0] = np.sort(np.append(edges[0], [1.0, 1.0]))  # repeated edges
    strict = rng.random(features) < 0.5
    expected = _one_feature_at_a_time(window, edges, strict)
    valid = (~np.isnan(window)).sum(axis=0)
    got = _Edges(edges, strict).counts(_keys(np.sort(window.T, axis=1)), valid, rows)
    np.testing.assert_array_equal(got[:, : expected.shape[1]], expected)
    assert not got[:, expected.shape[1] :].any()
