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
from typing import Any

from headwater.infra.sql_literals import render
from headwater.infra.warehouse import Warehouse
from headwater.streams.featureset import EntityState, FeatureSet
from headwater.streams.idle import IdleExpiry
from headwater.streams.pipeline import feature_record


def _arrival(event: Mapping[str, Any]) -> tuple[int, int]:
    return (event["source_partition"], event["source_offset"])


def offline_features(
    feature_set: FeatureSet, events: Iterable[Mapping[str, Any]], idle_ttl_ms: int = 0
) -> list[dict[str, Any]]:
    """``FeatureVector`` records (``computed_at_ms`` 0) for every event that the online worker
    would apply, in (entity, arrival) order. ``idle_ttl_ms`` is the worker's
    ``HEADWATER_ENTITY_IDLE_TTL_MS``: the events are replayed partition by partition in offset
    order, as the worker applies them, so each partition's event-time clock, and so which
    entity states have gone idle, are the worker's."""
    rows: list[tuple[tuple[str, int, int], dict[str, Any]]] = []
    states: dict[str, EntityState] = {}
    idle = IdleExpiry(idle_ttl_ms)
    for event in sorted(events, key=_arrival):
        entity, partition = event["entity_id"], event["source_partition"]
        offset, t = event["source_offset"], event["event_time_ms"]
        state = states.get(entity)
        if state is not None and 0 <= offset <= state.applied_offset:
            continue
        if state is None or idle.expired(partition, state.newest_time_ms):
            state = states[entity] = feature_set.new_state()
        if state.is_late(t):
            continue
        try:
            values = state.update(t, event["numeric"], event["categorical"], offset)
        except Exception:  # the online worker dead-letters these (INVALID_EVENT) too
            continue
        finally:
            idle.seen(partition, entity, state.newest_time_ms)
        rows.append(
            ((entity, partition, offset), feature_record(feature_set, dict(event), values or {}, 0))
        )
    rows.sort(key=lambda row: row[0])
    return [row for _, row in rows]


def warehouse_events(warehouse: Warehouse, event_type: str) -> list[dict[str, Any]]:
    """The validated events of one type from the warehouse, deduplicated (``FINAL``)."""
    sql = (
        "SELECT event_id, entity_id, event_time_ms, numeric, categorical, source_partition, "
        f"source_offset FROM {warehouse.database}.events FINAL "
        f"WHERE event_type = {render(event_type)} "
        "ORDER BY entity_id, source_partition, source_offset"
    )
    return warehouse.query(sql).dicts()


def warehouse_features(
    warehouse: Warehouse, feature_set: FeatureSet, idle_ttl_ms: int = 0
) -> list[dict[str, Any]]:
    """Point-in-time feature values of every event in the warehouse, for training
    (``idle_ttl_ms`` as in :func:`offline_features`)."""
    events = warehouse_events(warehouse, feature_set.event_type)
    return offline_features(feature_set, events, idle_ttl_ms)
