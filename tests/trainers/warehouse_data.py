"""Labelled history in the warehouse tables, as the streams sink would leave it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from headwater.infra.migrations import apply_migrations
from headwater.infra.warehouse import ChdbWarehouse, Warehouse

FEATURES = ("amount", "mean_1h", "n_1h")


def _insert(warehouse: Warehouse, table: str, rows: list[dict[str, Any]]) -> None:
    columns = [*rows[0], "_partition", "_offset"]
    warehouse.insert(table, columns, [[*r.values(), 0, i] for i, r in enumerate(rows)])


def insert_history(
    warehouse: Warehouse,
    model: str,
    feature_set: str,
    n: int = 400,
    seed: int = 0,
    names: tuple[str, ...] = FEATURES,
) -> None:
    """``n`` labelled events of one entity each: every third with a logged prediction, the
    rest with offline features only. The label depends on the features (learnable)."""
    rng = np.random.default_rng(seed)
    features, labels, predictions = [], [], []
    for i in range(n):
        t = 1_000_000 + i * 1_000
        amount, mean, count = rng.lognormal(3, 1), rng.lognormal(3, 0.5), float(rng.poisson(3))
        values = dict(zip(names, (amount, mean, count), strict=True))
        label = float(amount / mean + 0.3 * count + rng.normal(0, 0.3) > 2.2)
        # Identities of this feature set only: other tests share the session's warehouse, and
        # the labels table is deduplicated by entity, time and event id.
        entity, request = f"{feature_set}/card-{i}", f"req-{model}-{i}"
        event_id = f"{feature_set}/e-{i}"
        features.append(
            {
                "entity_id": entity,
                "feature_set": feature_set,
                "feature_set_version": 1,
                "event_id": event_id,
                "event_time_ms": t,
                "computed_at_ms": t + 5,
                "values": values,
            }
        )
        logged = i % 3 == 0
        labels.append(
            {
                "request_id": request if logged else "",
                "entity_id": entity,
                "event_id": event_id,
                "label": label,
                "event_time_ms": t,
                "labeled_at_ms": t + 50,
            }
        )
        if logged:
            predictions.append(
                {
                    "request_id": request,
                    "entity_id": entity,
                    "model": model,
                    "version": 1,
                    "route": "champion",
                    "output": 0.5,
                    "features": values,
                    "feature_set": feature_set,
                    "feature_set_version": 1,
                    "event_time_ms": t,
                    "served_at_ms": t + 2,
                    "latency_ms": 1.0,
                    "fallback": False,
                    "fallback_reason": "",
                    "source": "kafka",
                }
            )
    _insert(warehouse, "features", features)
    _insert(warehouse, "labels", labels)
    _insert(warehouse, "predictions", predictions)


DEMO_FEATURES = ("amount", "amount_mean_24h", "txn_count_1h")  # names the demo feature set declares


def main(argv: list[str]) -> int:
    """``python -m tests.trainers.warehouse_data HOME MODEL FEATURE_SET``: seed the embedded
    warehouse of a ``headwater`` home (run while no other process owns it)."""
    home, model, feature_set = argv
    warehouse = ChdbWarehouse(Path(home) / "warehouse", "headwater")
    try:
        apply_migrations(warehouse)
        insert_history(warehouse, model, feature_set, names=DEMO_FEATURES)
    finally:
        warehouse.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
