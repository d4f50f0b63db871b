"""Training references for drift detection, read from the model bundles the trainers store.

A bundle (:mod:`headwater.trainers.model_family`) keeps, per feature, the training data's decile
edges
(minimum and maximum included) and the share of rows in each ``numpy.histogram`` bin. Its inner
edges are the drift monitor's bins and its quantiles; the cumulative shares are the reference
CDF just below each edge (``strict_cdf``). Its metadata's ``data_end_ms`` (the newest training
row's event time, recorded by :func:`headwater.trainers.dataset.training_span`) says from when on
the
loop watches it.

>>> from headwater.trainers.model_family import FeatureReference as Trained
>>> trained = Trained((0.0, 1.0, 2.0, 3.0), (0.25, 0.25, 0.5), 1.6, 0.9, 400)
>>> ref = from_trained("amount", trained)
>>> ref.histogram_edges, ref.histogram_counts, ref.quantile_cdf
((1.0, 2.0), (100, 100, 200), (0.25, 0.5))
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from headwater.core.errors import HeadwaterError
from headwater.loop.drift_monitor import FeatureReference, VersionReference
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.model_family import FeatureReference as TrainedReference
from headwater.trainers.model_family import load_bundle


def from_trained(name: str, trained: TrainedReference) -> FeatureReference:
    inner = tuple(trained.edges[1:-1])
    counts = tuple(round(p * trained.count) for p in trained.proportions)
    cdf = tuple(float(c) for c in np.cumsum(trained.proportions)[: len(inner)])
    return FeatureReference(name, inner, counts, inner, cdf, trained.count, strict_cdf=True)


def references_of(trained: Mapping[str, TrainedReference]) -> dict[str, FeatureReference]:
    """Every feature with a usable training distribution (features never seen are skipped)."""
    return {
        name: from_trained(name, ref)
        for name, ref in trained.items()
        if ref.count > 0 and len(ref.proportions) == len(ref.edges) - 1
    }


def trained_until(metadata: Mapping[str, str]) -> int | None:
    """The newest training row's event time a bundle records, if it records one.

    >>> trained_until({"data_end_ms": "1700"}), trained_until({})
    (1700, None)
    """
    value = metadata.get("data_end_ms", "")
    return int(value) if value.lstrip("-").isdigit() else None


class BundleReferences:
    """Reference lookup by artifact: loads the bundle once per version from the store."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self.failures: dict[str, str] = {}

    def __call__(self, model: str, version: int, artifact_sha256: str) -> VersionReference | None:
        if not artifact_sha256:
            return None
        try:
            bundle = load_bundle(self.store.get_bytes(artifact_sha256))
        except HeadwaterError as error:
            # no reference means no data-drift monitor for this version; say why, don't crash
            self.failures[f"{model}@{version}"] = str(error)
            return None
        return VersionReference(references_of(bundle.reference), trained_until(bundle.metadata))
