"""Point-in-time training sets on the real chDB engine: labels never see future feature values."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from headwater.infra.warehouse import ChdbWarehouse
from headwater.trainers.errors import DatasetError
from headwater.trainers.point_in_time import DatasetSpec, build_training_set

pytestmark = pytest.mark.integration

FUTURE = 999.0  # a feature value that exists only after the labelled events
# The session's warehouse is shared by every test: this test's rows live in a time range of
# their own, far from any other test's, and the training set is built over that range only.
BASE = 4_000_000_000_000


def _insert(warehouse: ChdbWarehouse, table: str, rows: list[dict[str, Any]]) -> None:
    columns = [*rows[0], "_partition", "_offset"]
    warehouse.insert(table, columns, [[*r.values(), 0, i] for i, r in enumerate(rows)])


def _feature(entity: str, fs: str, t: int, value: float, computed: int = 0) -> dict[str, Any]:
    return {
        "entity_id": entity,
        "feature_set": fs,
        "feature_set_version": 1,
        "event_id": f"{entity}-{t}",
        "event_time_ms": BASE + t,
        "computed_at_ms": BASE + (computed or t),
        "values": {"amount": value, "count": 1.0},
    }


def _label(entity: str, t: int, label: float, request: str = "", at: int = 0) -> dict[str, Any]:
    return {
        "request_id": request,
        "entity_id": entity,
        "event_id": f"{entity}-{t}",
        "label": label,
        "event_time_ms": BASE + t,
        "labeled_at_ms": BASE + (at or t + 10),
    }


def _prediction(request: str, entity: str, model: str, t: int, amount: float) -> dict[str, Any]:
    return {
        "request_id": request,
        "entity_id": entity,
        "model": model,
        "version": 1,
        "route": "champion",
        "output": 0.5,
        "features": {"amount": amount, "count": 7.0},
        "feature_set": "fs",
        "feature_set_version": 2,
        "event_time_ms": BASE + t,
        "served_at_ms": BASE + t + 1,
        "latency_ms": 1.0,
        "fallback": False,
        "fallback_reason": "",
        "source": "kafka",
    }


def test_labels_join_logged_features_first_then_offline_as_of_their_time(
    warehouse: ChdbWarehouse, unique: str
) -> None:
    model, fs = f"pit-{unique}", f"fs-{unique}"
    _insert(
        warehouse,
        "features",
        [
            _feature("a", fs, 100, 1.0),
            _feature("a", fs, 200, 2.0),
            _feature("a", fs, 5000, FUTURE),  # after every label: must never be joined
            _feature("b", fs, 150, 3.0),
            _feature("b", fs, 290, FUTURE, computed=9_000),  # computed after as_of
            _feature("c", fs, 400, FUTURE),  # c's only vector is later than its label
        ],
    )
    _insert(warehouse, "predictions", [_prediction("req-1", "a", model, 250, 42.0)])
    _insert(
        warehouse,
        "labels",
        [
            _label("a", 250, 1.0, request="req-1"),  # logged features: amount 42
            _label("a", 220, 0.0),  # offline as of 220: amount 2.0 (not 999)
            _label("b", 300, 1.0),  # offline as of 300: amount 3.0 (290 was computed later)
            _label("c", 310, 0.0),  # no features at or before 310: left out, counted
            _label("b", 320, 1.0, at=9_500),  # labelled after as_of: not known yet
        ],
    )
    spec = DatasetSpec(
        model=model,
        feature_set=fs,
        start_ms=BASE,
        end_ms=BASE + 10_000,
        as_of_ms=BASE + 8_000,
        valid_fraction=0.34,
    )
    data = build_training_set(warehouse, spec)

    assert data.feature_names == ("amount", "count")
    x = np.vstack([data.train_x, data.valid_x])
    assert FUTURE not in x
    assert x[:, 0].tolist() == [2.0, 42.0, 3.0]  # ordered by event time: 220, 250, 300
    assert np.vstack([data.train_y[:, None], data.valid_y[:, None]]).ravel().tolist() == [0, 1, 1]
    assert len(data.valid_y) == 1 and data.valid_x[0, 0] == 3.0  # the latest row validates
    lineage = data.lineage
    assert lineage["row_count"] == "3"
    assert lineage["rows_logged_features"] == "1" and lineage["rows_offline_features"] == "2"
    assert lineage["labels_without_features"] == "1"
    assert lineage["feature_set_versions"] == "1,2"
    assert "ASOF LEFT JOIN" in lineage["query"] and len(lineage["content_sha256"]) == 64
    assert len(lineage["schema.dev.headwater.Label"]) == 16

    again = build_training_set(warehouse, spec)
    assert again.lineage["content_sha256"] == lineage["content_sha256"]


def test_no_labels_is_a_clear_error(warehouse: ChdbWarehouse, unique: str) -> None:
    with pytest.raises(DatasetError, match=f"model 'none-{unique}'"):
        build_training_set(warehouse, DatasetSpec(model=f"none-{unique}", feature_set="x"))


def test_offline_features_older_than_the_max_age_are_stale(
    warehouse: ChdbWarehouse, unique: str
) -> None:
    """A label whose entity's latest vector is older than the maximum age is left out (as
    Feast's time-to-live), counted as stale; logged features are what the model saw, any age."""
    model, fs = f"ttl-{unique}", f"fs-{unique}"
    t = 100_000  # a time range of this test's own (labels are shared by every model)
    _insert(
        warehouse,
        "features",
        [
            _feature("a", fs, t + 100, 1.0),
            _feature("a", fs, t + 200, 2.0),
            _feature("b", fs, t + 150, 3.0),
        ],
    )
    _insert(warehouse, "predictions", [_prediction("req-9", "b", model, t + 3_000, 42.0)])
    _insert(
        warehouse,
        "labels",
        [
            _label("a", t + 700, 1.0),  # a's vector at 200: 500 ms old, fresh
            _label("a", t + 1_300, 0.0),  # a's vector at 200: 1,100 ms old, stale
            _label("b", t + 2_000, 1.0),  # b's vector at 150: stale
            _label("b", t + 3_000, 0.0, request="req-9"),  # logged: what the model saw
        ],
    )
    spec = DatasetSpec(
        model=model,
        feature_set=fs,
        start_ms=BASE + t,
        end_ms=BASE + t + 10_000,
        as_of_ms=BASE + t + 8_000,
        valid_fraction=0.5,
        max_feature_age_ms=1_000,
    )
    data = build_training_set(warehouse, spec)

    x = np.vstack([data.train_x, data.valid_x])
    assert x[:, 0].tolist() == [2.0, 42.0]  # a at 700, then b's logged features at 3,000
    lineage = data.lineage
    assert lineage["rows_offline_features"] == "1" and lineage["rows_logged_features"] == "1"
    assert lineage["labels_with_stale_features"] == "2"
    assert lineage["labels_without_features"] == "2"
    assert lineage["max_feature_age_ms"] == "1000"

    any_age = build_training_set(warehouse, replace(spec, max_feature_age_ms=0))
    assert any_age.rows == 4 and any_age.lineage["labels_with_stale_features"] == "0"

    with pytest.raises(DatasetError, match="3 of them only with features older than"):
        build_training_set(warehouse, replace(spec, max_feature_age_ms=1, end_ms=BASE + t + 2_500))
    with pytest.raises(DatasetError, match="--max-feature-age-ms"):
        build_training_set(warehouse, replace(spec, max_feature_age_ms=-1))
