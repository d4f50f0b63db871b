"""Point-in-time training sets from the warehouse.

Each label is joined to the feature values *as they were when the prediction was made*:

1. the features logged on ``predictions`` for the label's request (exactly what the model saw),
2. otherwise the offline feature vector of the label's entity from ``features`` with the latest
   event time **at or before** the label's event time (an ASOF join) — never a later one, and,
   with ``max_feature_age_ms`` (``HEADWATER_TRAINING_MAX_FEATURE_AGE_MS``), none older than
   that before it (Feast's time-to-live of a feature view): a label whose entity's latest
   vector is older is left out and counted as stale, rather than trained on values the
   entity no longer had (a long-quiet entity, or a sink still landing the label's own event),

and only labels and feature vectors that existed at the ``as_of`` time are used, so a dataset
rebuilt later from the same range is the same dataset. Rows are split by time (the most recent
validate) and the lineage (query, range, counts, content hash, schema fingerprints, feature-set
versions) travels with the set.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from headwater.infra.sql_literals import render
from headwater.infra.warehouse import Warehouse
from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.models import FeatureVector, Label, Prediction
from headwater.trainers.dataset import TrainingSet
from headwater.trainers.errors import DatasetError


@dataclass(frozen=True)
class DatasetSpec:
    """Which rows make a model's training set."""

    model: str
    feature_set: str
    feature_set_version: int = 0  # 0: every version
    start_ms: int = 0
    end_ms: int = 0  # 0: up to as_of
    as_of_ms: int = 0  # 0: now
    feature_names: tuple[str, ...] = ()  # empty: every feature seen, sorted
    valid_fraction: float = 0.2
    # An offline vector older than this before the label's event time is stale (0: any age).
    max_feature_age_ms: int = 0

    def resolved(self) -> DatasetSpec:
        if self.max_feature_age_ms < 0:
            raise DatasetError(
                f"the maximum feature age must be at least 0 ms (0: any age), not "
                f"{self.max_feature_age_ms} (--max-feature-age-ms)"
            )
        now = self.as_of_ms or int(time.time() * 1000)
        end = min(self.end_ms, now + 1) if self.end_ms else now + 1
        if end <= self.start_ms:
            raise DatasetError(f"empty time range [{self.start_ms}, {end}) for {self.model}")
        return replace(self, end_ms=end, as_of_ms=now)


def point_in_time_query(spec: DatasetSpec, database: str) -> str:
    """The one SQL statement that joins labels to their features as of their event time."""
    version = (
        f" AND feature_set_version = {spec.feature_set_version}" if spec.feature_set_version else ""
    )
    age = spec.max_feature_age_ms
    fresh = f"l.event_time_ms - o.event_time_ms <= {int(age)}" if age else "1"
    return f"""
WITH
labels_in_range AS (
    SELECT request_id, entity_id, event_id, label, event_time_ms
    FROM {database}.labels FINAL
    WHERE event_time_ms >= {spec.start_ms} AND event_time_ms < {spec.end_ms}
      AND labeled_at_ms <= {spec.as_of_ms}
),
logged AS (
    SELECT request_id,
           argMin(features, route = 'shadow') AS logged_features,
           argMin(feature_set_version, route = 'shadow') AS logged_version
    FROM {database}.predictions FINAL
    WHERE model = {render(spec.model)} AND request_id != '' AND served_at_ms <= {spec.as_of_ms}
    GROUP BY request_id
),
offline AS (
    SELECT entity_id, event_time_ms, values AS offline_features,
           feature_set_version AS offline_version
    FROM {database}.features FINAL
    WHERE feature_set = {render(spec.feature_set)}{version}
      AND computed_at_ms <= {spec.as_of_ms}
)
SELECT l.request_id AS request_id, l.entity_id AS entity_id, l.event_time_ms AS event_time_ms,
       l.label AS label,
       multiIf(p.request_id != '', 'logged', o.entity_id = '', 'none', {fresh}, 'offline',
               'stale') AS source,
       if(p.request_id != '', p.logged_features, o.offline_features) AS features,
       if(p.request_id != '', p.logged_version, o.offline_version) AS feature_set_version,
       o.event_time_ms AS offline_event_time_ms
FROM labels_in_range AS l
LEFT JOIN logged AS p ON l.request_id = p.request_id
ASOF LEFT JOIN offline AS o ON l.entity_id = o.entity_id AND o.event_time_ms <= l.event_time_ms
ORDER BY event_time_ms, entity_id, request_id
""".strip()


SOURCE_SCHEMAS = (Label, Prediction, FeatureVector)


def schema_fingerprints() -> dict[str, str]:
    """The Avro fingerprints of the schemas the dataset was read through."""
    catalog = SchemaCatalog.default()
    return {
        f"schema.{model.SCHEMA}": catalog.get(model.SCHEMA).fingerprint.hex()
        for model in SOURCE_SCHEMAS
    }


def _matrix(
    rows: Sequence[dict[str, Any]], names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.full((len(rows), len(names)), np.nan)
    index = {name: i for i, name in enumerate(names)}
    for r, row in enumerate(rows):
        for name, value in row["features"].items():
            column = index.get(name)
            if column is not None and value is not None:
                x[r, column] = float(value)
    y = np.array([float(row["label"]) for row in rows])
    times = np.array([int(row["event_time_ms"]) for row in rows], dtype=np.int64)
    return x, y, times


def build_training_set(warehouse: Warehouse, spec: DatasetSpec) -> TrainingSet:
    """The point-in-time training set of ``spec`` (see the module's docstring)."""
    spec = spec.resolved()
    sql = point_in_time_query(spec, warehouse.database)
    found = warehouse.query(sql).dicts()
    rows = [row for row in found if row["source"] in ("logged", "offline") and row["features"]]
    stale = sum(row["source"] == "stale" for row in found)
    if len(rows) < 2:
        too_old = (
            f", {stale} of them only with features older than the maximum feature age of "
            f"{spec.max_feature_age_ms} ms (HEADWATER_TRAINING_MAX_FEATURE_AGE_MS, "
            "--max-feature-age-ms)"
            if stale
            else ""
        )
        raise DatasetError(
            f"only {len(rows)} labelled row(s) with features for model {spec.model!r} "
            f"(feature set {spec.feature_set!r}) in [{spec.start_ms}, {spec.end_ms}) as of "
            f"{spec.as_of_ms}; {len(found)} label(s) found{too_old} — are labels and features "
            "in the warehouse?"
        )
    names = spec.feature_names or tuple(sorted({k for row in rows for k in row["features"]}))
    x, y, times = _matrix(rows, names)
    versions = sorted({int(row["feature_set_version"]) for row in rows})
    lineage = {
        "query": sql,
        "model": spec.model,
        "feature_set": spec.feature_set,
        "feature_set_versions": ",".join(map(str, versions)),
        "start_ms": str(spec.start_ms),
        "end_ms": str(spec.end_ms),
        "as_of_ms": str(spec.as_of_ms),
        "row_count": str(len(rows)),
        "rows_logged_features": str(sum(row["source"] == "logged" for row in rows)),
        "rows_offline_features": str(sum(row["source"] == "offline" for row in rows)),
        "labels_without_features": str(len(found) - len(rows)),
        "labels_with_stale_features": str(stale),  # of those without: older than the max age
        "max_feature_age_ms": str(spec.max_feature_age_ms),
        "data_start_ms": str(int(times.min())),
        "data_end_ms": str(int(times.max())),
        **schema_fingerprints(),
    }
    data = TrainingSet.from_arrays(
        x, y, times, names, valid_fraction=spec.valid_fraction, lineage=lineage
    )
    return _with_content_hash(data)


def _with_content_hash(data: TrainingSet) -> TrainingSet:
    """The content hash covers the rows and names (not the lineage that records it)."""
    digest = hashlib.sha256()
    for array in (data.train_x, data.train_y, data.valid_x, data.valid_y):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update("\0".join(data.feature_names).encode())
    lineage = {**data.lineage, "content_sha256": digest.hexdigest()}
    return TrainingSet(
        data.feature_names, data.train_x, data.train_y, data.valid_x, data.valid_y, lineage
    )
