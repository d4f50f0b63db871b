"""The canary controller on simulated live traffic: promotes a better model step by step, rolls
back a worse one and a broken one, and runs a shadow first when asked."""

from __future__ import annotations

import random

from headwater.loop.canary import CanaryConfig, CanaryController, CanaryDecision
from headwater.loop.label_join import Outcome
from headwater.schemas.models import Label, ModelVersion, Prediction, Route


def _output(rng: random.Random, label: float, skill: float) -> float:
    """A calibrated-ish score: ``skill`` in [0, 1] separates the classes."""
    noise = rng.gauss(0, 0.25)
    return min(max(0.5 + (label - 0.5) * skill + noise, 0.0), 1.0)


def _traffic(
    controller: CanaryController,
    skills: dict[int, float],
    events: int,
    seed: int,
    broken: int | None = None,
) -> list[CanaryDecision]:
    """Route simulated requests as the controller's decisions say; returns all decisions."""
    rng = random.Random(seed)
    decisions = list(controller.history)
    weights = {1: 1.0}
    shadows: list[int] = []
    for i in range(events):
        if decisions and decisions[-1].action in ("promoted", "rolled_back"):
            break
        if decisions:
            weights = {int(v): w for v, w in decisions[-1].routing.weights.items()}
            shadows = decisions[-1].routing.shadows
        label = float(rng.random() < 0.3)
        point = rng.random()
        version = 1 if point < weights.get(1, 0.0) else max(weights)
        routes: list[tuple[int, Route]] = [
            (version, "champion" if version == controller.champion else "canary")
        ]
        routes += [(v, "shadow") for v in shadows]
        for v, route in routes:
            if v == broken:
                decisions += controller.observe_failure(v, "timeout after 1000 ms", i)
                continue
            prediction = Prediction(
                request_id=f"r{i}",
                entity_id=f"c{i}",
                model="fraud",
                version=v,
                route=route,
                output=_output(rng, label, skills[v]),
                features={},
                event_time_ms=i,
                served_at_ms=i,
                latency_ms=1.0,
            )
            label_event = Label(
                request_id=f"r{i}",
                entity_id=f"c{i}",
                label=label,
                event_time_ms=i,
                labeled_at_ms=i,
            )
            decisions += controller.observe(Outcome(prediction, label_event))
    return decisions


def _start(controller: CanaryController) -> list[CanaryDecision]:
    registered = ModelVersion(model="fraud", version=2, action="registered", event_time_ms=0)
    return controller.on_registered(registered, champion=1)


def test_a_better_candidate_is_promoted_step_by_step_with_evidence() -> None:
    controller = CanaryController("fraud")
    _start(controller)
    decisions = _traffic(controller, {1: 0.3, 2: 0.7}, 50_000, seed=1)
    assert [d.action for d in decisions] == ["canary", "canary", "canary", "promoted"]
    assert [d.model_version.metrics.get("weight") for d in decisions[1:]] == [0.25, 0.5, 1.0]
    assert [d.routing.weights for d in decisions] == [
        {"1": 0.9, "2": 0.1},
        {"1": 0.75, "2": 0.25},
        {"1": 0.5, "2": 0.5},
        {"2": 1.0},
    ]
    final = decisions[-1].model_version.metrics
    assert final["candidate_loss"] < final["champion_loss"]
    assert final["evidence_not_worse"] >= final["evidence_bar"]
    assert controller.champion == 2 and controller.candidate is None


def test_a_worse_candidate_is_rolled_back() -> None:
    controller = CanaryController("fraud")
    _start(controller)
    decisions = _traffic(controller, {1: 0.7, 2: 0.3}, 50_000, seed=2)
    assert decisions[-1].action == "rolled_back"
    assert decisions[-1].routing.weights == {"1": 1.0}
    assert decisions[-1].model_version.metrics["evidence_worse"] >= 20
    assert "significantly worse" in decisions[-1].model_version.reason
    assert controller.champion == 1


def test_a_broken_candidate_is_rolled_back_at_once() -> None:
    controller = CanaryController("fraud")
    _start(controller)
    decisions = _traffic(controller, {1: 0.7, 2: 0.9}, 50_000, 3, broken=2)
    assert [d.action for d in decisions] == ["canary", "rolled_back"]
    assert decisions[-1].model_version.metrics["errors"] == 3
    assert decisions[-1].model_version.metrics["candidate_outcomes"] == 0


def test_shadow_first_then_canary_and_queue_of_versions() -> None:
    controller = CanaryController("fraud", CanaryConfig(shadow_first=True))
    decisions = _start(controller)
    assert decisions[0].action == "shadow" and decisions[0].routing.shadows == [2]
    assert decisions[0].routing.weights == {"1": 1.0}
    later = ModelVersion(model="fraud", version=3, action="registered", event_time_ms=1)
    assert controller.on_registered(later, champion=1) == []  # queued behind version 2
    decisions = _traffic(controller, {1: 0.3, 2: 0.7, 3: 0.7}, 50_000, seed=4)
    actions = [d.action for d in decisions]
    assert actions[:3] == ["shadow", "canary", "canary"] and "promoted" in actions
    # the queued version starts, in shadow, once version 2 is decided
    promoted = actions.index("promoted")
    assert decisions[promoted].model_version.version == 2
    assert (decisions[promoted + 1].action, decisions[promoted + 1].model_version.version) == (
        "shadow",
        3,
    )
    assert decisions[promoted + 1].routing.weights == {"2": 1.0}


def test_an_equal_candidate_is_not_rolled_back() -> None:
    rollbacks = 0
    for seed in range(5):
        controller = CanaryController("fraud")
        _start(controller)
        decisions = _traffic(controller, {1: 0.5, 2: 0.5}, 20_000, seed)
        rollbacks += any(
            d.action == "rolled_back" and "significantly" in d.model_version.reason
            for d in decisions
        )
    assert rollbacks == 0


def test_first_version_is_promoted_without_a_trial() -> None:
    controller = CanaryController("fraud")
    first = ModelVersion(model="fraud", version=1, action="registered", event_time_ms=0)
    decisions = controller.on_registered(first, champion=None)
    assert [(d.action, d.routing.weights) for d in decisions] == [("promoted", {"1": 1.0})]
