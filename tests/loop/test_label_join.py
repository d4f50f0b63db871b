"""Label join with late, early, missing and duplicate labels; live quality windows."""

from __future__ import annotations

import numpy as np

from headwater.loop.label_join import LabelJoiner
from headwater.loop.live_metrics import LiveQuality
from headwater.loop.quality import roc_auc
from headwater.schemas.models import Label, Prediction, Route

HORIZON = 10_000


def _prediction(rid: str, t: int, route: Route = "champion", version: int = 1) -> Prediction:
    return Prediction(
        request_id=rid,
        entity_id=f"card-{rid}",
        model="fraud",
        version=version,
        route=route,
        output=0.7,
        features={"amount": 1.0},
        event_time_ms=t,
        served_at_ms=t,
        latency_ms=1.0,
    )


def _label(rid: str, t: int, by_entity: bool = False, event_time: int = 0) -> Label:
    return Label(
        request_id="" if by_entity else rid,
        entity_id=f"card-{rid}",
        label=1.0,
        event_time_ms=event_time,
        labeled_at_ms=t,
    )


def test_late_early_missing_and_duplicate_labels_are_all_accounted_for() -> None:
    joiner = LabelJoiner(HORIZON)
    joined = []
    for i in range(100):
        joined += joiner.add_prediction(_prediction(f"r{i}", i * 100))
    # late labels within the horizon for r0..r49, by request id
    for i in range(50):
        joined += joiner.add_label(_label(f"r{i}", 5_000 + i * 10))
    # a label by entity and event time for r50 (no request id)
    joined += joiner.add_label(_label("r50", 9_000, by_entity=True, event_time=5_000))
    # a duplicate label and two labels for requests that never happened
    joined += joiner.add_label(_label("r1", 9_100))
    joined += joiner.add_label(_label("ghost-1", 9_200))
    joined += joiner.add_label(_label("ghost-2", 9_300))
    # a label that arrives before its prediction
    joined += joiner.add_label(_label("early", 9_400))
    joined += joiner.add_prediction(_prediction("early", 9_500))
    joiner.advance(100_000)  # everything else expires
    counts = joiner.counts
    assert len(joined) == counts.joined == 52
    assert counts.predictions == 101 and counts.labels == 55
    assert counts.unlabeled_predictions == 49  # r51..r99
    assert counts.unmatched_labels == 2 and counts.duplicate_labels == 1
    assert counts.pending_predictions == 0 and counts.pending_labels == 0
    assert counts.joined + counts.unlabeled_predictions == counts.predictions
    # every label is matched (52, one prediction each here), unmatched or a duplicate
    assert counts.labels == 52 + counts.unmatched_labels + counts.duplicate_labels


def test_a_label_after_the_horizon_is_counted_on_both_sides() -> None:
    joiner = LabelJoiner(HORIZON)
    joiner.add_prediction(_prediction("r1", 0))
    joiner.advance(HORIZON + 1)
    assert joiner.add_label(_label("r1", HORIZON + 2)) == []
    joiner.advance(3 * HORIZON)
    counts = joiner.counts
    assert (counts.unlabeled_predictions, counts.unmatched_labels, counts.joined) == (1, 1, 0)


def test_shadow_prediction_of_a_labelled_request_also_joins() -> None:
    joiner = LabelJoiner(HORIZON)
    joiner.add_prediction(_prediction("r1", 0))
    assert len(joiner.add_label(_label("r1", 100))) == 1
    late_shadow = joiner.add_prediction(_prediction("r1", 150, route="shadow", version=2))
    assert [o.prediction.route for o in late_shadow] == ["shadow"]
    assert joiner.counts.joined == 2


def test_live_quality_per_version_and_route_over_windows() -> None:
    rng = np.random.default_rng(4)
    joiner = LabelJoiner(HORIZON)
    quality = LiveQuality(tumbling_ms=10_000, sliding=200, emit_every=100)
    metrics = []
    for i in range(2_000):
        route: Route = "canary" if i % 10 == 0 else "champion"
        truth = float(rng.random() < 0.3)
        good = route == "champion"
        output = float(np.clip(truth * 0.6 + 0.2 + rng.normal(0, 0.15 if good else 0.4), 0, 1))
        p = _prediction(f"r{i}", i * 10, route=route, version=2 if route == "canary" else 1)
        joiner.add_prediction(p.model_copy(update={"output": output}))
        label = Label(
            request_id=f"r{i}",
            entity_id="c",
            label=truth,
            event_time_ms=i * 10,
            labeled_at_ms=i * 10 + 500,
        )
        for outcome in joiner.add_label(label):
            metrics += quality.update(outcome)
    metrics += quality.flush()
    tumbling = [m for m in metrics if m.window == "tumbling:10000ms" and m.metric == "roc_auc"]
    assert {(m.version, m.route) for m in tumbling} == {(1, "champion"), (2, "canary")}
    assert sum(m.count for m in tumbling) == 2_000
    champion = np.mean([m.value for m in tumbling if m.route == "champion"])
    canary = np.mean([m.value for m in tumbling if m.route == "canary"])
    assert champion > canary
    assert any(m.window == "sliding:200" and m.count == 200 for m in metrics)


def test_roc_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(300) < 0.4).astype(float)
    p = np.round(rng.random(300), 2)  # ties on purpose
    pairs = [
        1.0 if a > b else 0.5 if a == b else 0.0
        for a, ya in zip(p, y, strict=True)
        for b, yb in zip(p, y, strict=True)
        if ya == 1 and yb == 0
    ]
    assert abs((roc_auc(y, p) or 0.0) - float(np.mean(pairs))) < 1e-9
    assert roc_auc(np.ones(3), p[:3]) is None


def test_one_far_future_timestamp_neither_stalls_nor_flushes_the_clock() -> None:
    """A prediction stamped a year ahead: the clock goes no further than the wall clock plus
    the skew, so predictions after it still join their labels, and it expires like the rest."""
    wall = [1_000_000]
    joiner = LabelJoiner(HORIZON, max_skew_ms=1_000, wall_clock_ms=lambda: wall[0])
    year = 365 * 86_400_000
    assert joiner.add_prediction(_prediction("future", wall[0] + year)) == []
    assert joiner.add_prediction(_prediction("r1", wall[0] + 10)) == []
    wall[0] += 500
    joined = joiner.add_label(_label("r1", wall[0]))
    assert [o.prediction.request_id for o in joined] == ["r1"]
    assert joiner.counts.pending_predictions == 1 and joiner.clamped_timestamps == 1
    wall[0] += HORIZON + 5_000
    joiner.advance(wall[0])
    assert joiner.counts.pending_predictions == 0
    assert joiner.counts.unlabeled_predictions == 1  # the future one, counted, not kept forever
