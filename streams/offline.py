"""The offline path: the same feature declarations, computed from history for training.

Replays validated events — the warehouse's ``events`` table or a list read from the topic —
through the very :class:`~headwater.streams.featureset.EntityState` the online worker uses, entity
by
entity in arrival order (the source offset), and returns each event's feature values as of its
own time: point-in-time correct by construction, with no training-serving skew.

>>> from headwater.streams.feature_module import load_feature_module
>>> fs = load_feature_module("headwater.demo.features").feature_set
>>> events = [{"event_id": f"e{i}", "entity_id": "c1", "event_time_ms": 60_000 * i,
...            "numeric": {"amount": 10.0 * i}, "categorical": {"channel": "pos"},
...            "source_partition": 0, "source_offset": i} for i in (1, 2)]
>>> rows = offline_features(fs, events)
>>> [(r["event_id"], r["values"]["txn_count_10m"], r["values"]["amount_sum_1h"]) for r in rows]
[('e1', 1.0, 10.0), ('e2', 2.0, 30.0)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import groupby
from typing import Any

from headwater.infra.sql_literals import render
from headwater.infra.warehouse import Warehouse
from headwater.streams.featureset import FeatureSet
from headwater.streams.pipeline import feature_record


def _arrival(event: Mapping[str, Any]) -> tuple[str, int, int]:
    return (event["entity_id"], event["source_partition"], event["source_offset"])


def offline_features(
    feature_set: FeatureSet, events: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``FeatureVector`` records (``computed_at_ms`` 0) for every event that the online worker
    would apply, in (entity, arrival) order."""
    rows = []
    ordered = sorted(events, key=_arrival)
    for _, entity_events in groupby(ordered, key=lambda e: e["entity_id"]):
        state = feature_set.new_state()
        for event in entity_events:
            offset, t = event["source_offset"], event["event_time_ms"]
            if 0 <= offset <= state.applied_offset or state.is_late(t):
                continue
            try:
                values = state.update(t, event["numeric"], event["categorical"], offset)
            except Exception:  # the online worker dead-letters these (INVALID_EVENT) too
                continue
            rows.append(feature_record(feature_set, dict(event), values or {}, 0))
    return rows


def warehouse_events(warehouse: Warehouse, event_type: str) -> list[dict[str, Any]]:
    """The validated events of one type from the warehouse, deduplicated (``FINAL``)."""
    sql = (
        "SELECT event_id, entity_id, event_time_ms, numeric, categorical, source_partition, "
        f"source_offset FROM {warehouse.database}.events FINAL "
        f"WHERE event_type = {render(event_type)} "
        "ORDER BY entity_id, source_partition, source_offset"
    )
    return warehouse.query(sql).dicts()


def warehouse_features(warehouse: Warehouse, feature_set: FeatureSet) -> list[dict[str, Any]]:
    """Point-in-time feature values of every event in the warehouse, for training."""
    return offline_features(feature_set, warehouse_events(warehouse, feature_set.event_type))
