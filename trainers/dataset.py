"""A training set: feature matrices, labels, a time-based split, and its lineage.

It travels between processes (the search driver, trial workers, torchrun ranks) as an artifact:
an ``.npz`` archive without pickles, whose sha256 names the exact rows a model was trained on.

>>> import numpy as np
>>> data = TrainingSet.from_arrays(np.arange(8.0).reshape(4, 2), np.array([0, 1, 0, 1.0]),
...     np.array([1, 2, 3, 4]), ("a", "b"), valid_fraction=0.25)
>>> len(data.train_y), len(data.valid_y)
(3, 1)
>>> TrainingSet.from_bytes(data.to_bytes()).feature_names
('a', 'b')
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from headwater.trainers.errors import DatasetError

if TYPE_CHECKING:  # model_family imports torch; a training set does not need it to load
    from headwater.trainers.model_family import FeatureReference

TRAINING_SPAN_KEYS = ("data_start_ms", "data_end_ms")


def training_span(lineage: Mapping[str, str]) -> dict[str, str]:
    """The event-time span of a training set (from its lineage), for a bundle's metadata: the
    loop watches a version only on events after it (see ``headwater.loop.references``).

    >>> training_span({"data_start_ms": "5", "data_end_ms": "9", "query": "SELECT 1"})
    {'data_start_ms': '5', 'data_end_ms': '9'}
    """
    return {key: lineage[key] for key in TRAINING_SPAN_KEYS if key in lineage}


@dataclass(frozen=True)
class TrainingSet:
    """Rows ordered by event time; the last ``valid`` rows (the most recent) validate."""

    feature_names: tuple[str, ...]
    train_x: np.ndarray
    train_y: np.ndarray
    valid_x: np.ndarray
    valid_y: np.ndarray
    lineage: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_arrays(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        event_time_ms: np.ndarray,
        feature_names: Sequence[str],
        *,
        valid_fraction: float = 0.2,
        lineage: Mapping[str, str] | None = None,
    ) -> TrainingSet:
        """Split by time: rows before the cut train, rows at or after it validate."""
        if len(x) != len(y) or len(x) != len(event_time_ms):
            raise DatasetError(
                f"{len(x)} rows of features, {len(y)} labels, {len(event_time_ms)} times"
            )
        if len(x) < 2:
            raise DatasetError(f"need at least 2 labelled rows to split, got {len(x)}")
        order = np.argsort(event_time_ms, kind="stable")
        n_valid = min(max(1, round(len(x) * valid_fraction)), len(x) - 1)
        cut = len(x) - n_valid
        train, valid = order[:cut], order[cut:]
        return cls(
            tuple(feature_names),
            x[train].astype(np.float64),
            y[train].astype(np.float64),
            x[valid].astype(np.float64),
            y[valid].astype(np.float64),
            dict(lineage or {}),
        )

    @property
    def rows(self) -> int:
        return len(self.train_y) + len(self.valid_y)

    # What depends only on the rows is computed once per training set, not once per fit: a
    # trial worker keeps the set between trials, and a search's trials share it.
    @cached_property
    def content_sha256(self) -> str:
        """sha256 of the rows, labels and feature names (computed on first use, then kept)."""
        digest = hashlib.sha256()
        for array in (self.train_x, self.train_y, self.valid_x, self.valid_y):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update("\0".join(self.feature_names).encode())
        return digest.hexdigest()

    @cached_property
    def reference(self) -> dict[str, FeatureReference]:
        """The training rows' distribution of every feature (computed on first use, then kept)."""
        from headwater.trainers.model_family import reference_distributions

        return reference_distributions(self.train_x, self.feature_names)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        keys = sorted(self.lineage)
        np.savez(
            buffer,
            feature_names=np.array(self.feature_names, dtype=np.str_),
            train_x=self.train_x,
            train_y=self.train_y,
            valid_x=self.valid_x,
            valid_y=self.valid_y,
            lineage_keys=np.array(keys, dtype=np.str_),
            lineage_values=np.array([self.lineage[k] for k in keys], dtype=np.str_),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainingSet:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                lineage = dict(
                    zip(
                        (str(k) for k in archive["lineage_keys"]),
                        (str(v) for v in archive["lineage_values"]),
                        strict=True,
                    )
                )
                return cls(
                    tuple(str(n) for n in archive["feature_names"]),
                    archive["train_x"],
                    archive["train_y"],
                    archive["valid_x"],
                    archive["valid_y"],
                    lineage,
                )
        except (OSError, KeyError, ValueError) as error:
            raise DatasetError(f"not a training set archive ({len(data)} bytes): {error}") from None
