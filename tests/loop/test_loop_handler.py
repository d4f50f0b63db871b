"""The loop handler end to end without a broker: drift → retrain request → canary → promotion."""

from __future__ import annotations

import random

import numpy as np

from headwater.loop.agent_runner import Output
from headwater.loop.canary import CanaryConfig
from headwater.loop.drift_monitor import FeatureReference, VersionReference
from headwater.loop.loop_handler import LoopConfig, LoopHandler, References
from headwater.schemas.models import (
    DriftAlarm,
    EventModel,
    Label,
    Metric,
    ModelVersion,
    Prediction,
    RetrainRequest,
    Route,
    Routing,
)

SHA = {1: "a" * 64, 2: "b" * 64, 3: "c" * 64}


def _references(model: str, version: int, sha256: str) -> References | None:
    rng = np.random.default_rng(version)
    mean = 3.0 if version == 1 else 3.6  # version 2 was trained after the drift
    return {"amount": FeatureReference.from_sample("amount", rng.lognormal(mean, 1, 5000))}


class World:
    """Serving as the routing says; version 1 loses its skill after the drift."""

    def __init__(self, handler: LoopHandler, clock: list[int]) -> None:
        self.handler = handler
        self.clock = clock
        self.rng = random.Random(9)
        self.weights: dict[int, float] = {}
        self.out: list[Output] = []
        self.t = 0
        self.bad_versions: set[int] = set()  # versions that are wrong more often than not

    def feed(self, topic: str, event: EventModel) -> None:
        produced = self.handler.handle(topic, event)
        produced += self.handler.on_tick(self.t)
        self.out += produced
        for out_topic, out_event in produced:  # what the broker would hand back
            if out_topic == "routing":
                assert isinstance(out_event, Routing)
                self.weights = {int(v): w for v, w in out_event.weights.items()}
            if out_topic in ("model-versions", "drift"):
                self.feed(out_topic, out_event)

    def register(self, version: int) -> None:
        self.feed(
            "model-versions",
            ModelVersion(
                model="fraud",
                version=version,
                action="registered",
                artifact_sha256=SHA[version],
                event_time_ms=self.t,
            ),
        )

    def traffic(self, n: int, drifted: bool) -> None:
        for _ in range(n):
            self.t += 100
            self.clock[0] = self.t
            label = float(self.rng.random() < 0.3)
            versions = sorted(self.weights)
            point, version, acc = self.rng.random(), versions[-1], 0.0
            for v in versions:
                acc += self.weights[v]
                if point < acc:
                    version = v
                    break
            champion = max(versions, key=lambda v: (self.weights[v], -v))
            route: Route = "champion" if version == champion else "canary"
            skill = 0.1 if (drifted and version == 1) else 0.8
            if version in self.bad_versions:
                skill = -0.6
            noise = self.rng.gauss(0, 0.2)
            output = min(max(0.5 + (label - 0.5) * skill + noise, 0.0), 1.0)
            amount = self.rng.lognormvariate(3.6 if drifted else 3.0, 1)
            rid = f"r{self.t}"
            self.feed(
                "predictions",
                Prediction(
                    request_id=rid,
                    entity_id="c",
                    model="fraud",
                    version=version,
                    route=route,
                    output=output,
                    features={"amount": amount},
                    event_time_ms=self.t,
                    served_at_ms=self.t,
                    latency_ms=1.0,
                ),
            )
            self.feed(
                "labels",
                Label(
                    request_id=rid,
                    entity_id="c",
                    label=label,
                    event_time_ms=self.t,
                    labeled_at_ms=self.t + 50,
                ),
            )


def test_drift_leads_to_a_retrain_request_and_the_new_version_is_promoted() -> None:
    config = LoopConfig(
        drift_window=300,
        retrain_min_alarms=3,
        retrain_sustain_ms=600_000,
        canary=CanaryConfig(min_outcomes_per_step=60),
    )
    clock = [0]
    handler = LoopHandler(_references, config, clock=lambda: clock[0])
    world = World(handler, clock)
    world.register(1)
    assert world.weights == {1: 1.0}  # the first version serves everything
    world.traffic(3_000, drifted=False)
    assert handler.counts.alarms == 0 and handler.counts.retrain_requests == 0
    world.traffic(1_500, drifted=True)
    requests = [e for _, e in world.out if isinstance(e, RetrainRequest)]
    assert len(requests) == 1
    # the request trains on the world after the change (at 300 100 ms of event time): the
    # error detectors' change point, give or take ADWIN's coarse window
    assert 300_100 - 20_000 <= requests[0].since_ms <= world.t
    alarm_ids = {e.alarm_id for _, e in world.out if isinstance(e, DriftAlarm)}
    assert set(requests[0].alarm_ids) <= alarm_ids
    world.register(2)
    assert world.weights == {1: 0.9, 2: 0.1}
    world.traffic(8_000, drifted=True)
    actions = [(d.action, d.model_version.version) for d in handler.decisions]
    assert actions[-1] == ("promoted", 2) and ("canary", 2) in actions
    assert world.weights == {2: 1.0}
    assert handler.registry.champion("fraud") == 2
    metrics = {(e.version, e.route) for _, e in world.out if isinstance(e, Metric)}
    assert {(1, "champion"), (2, "canary"), (2, "champion")} <= metrics
    counts = handler.joiner.counts
    assert counts.joined == counts.predictions - counts.pending_predictions


def test_versions_handed_over_by_the_retrain_worker_are_routed_and_tried() -> None:
    handler = LoopHandler(_references, LoopConfig(), clock=lambda: 5)

    def batch(*events: ModelVersion) -> list[Routing]:
        out = [o for e in events for o in handler.handle("model-versions", e)]
        out += handler.on_tick(5)
        return [e for _, e in out if isinstance(e, Routing)]

    def event(version: int, action: str, actor: str = "retrain-worker") -> ModelVersion:
        sha = SHA[version] if action == "registered" else ""
        return ModelVersion.model_validate(
            {
                "model": "fraud",
                "version": version,
                "action": action,
                "actor": actor,
                "artifact_sha256": sha,
                "event_time_ms": version,
            }
        )

    # the worker registers and promotes the first version in one go: it is routed, not tried
    routed = batch(event(1, "registered"), event(1, "promoted"))
    assert [r.weights for r in routed] == [{"1": 1.0}]
    # the worker registers the next one and puts it in canary: the controller tries it
    routed = batch(event(2, "registered"), event(2, "canary"))
    assert [r.weights for r in routed] == [{"1": 0.9, "2": 0.1}]
    assert handler.controllers["fraud"].candidate == 2
    # a replay of the old promotion routes nothing back
    assert batch(event(1, "promoted")) == []


def test_a_version_is_watched_only_on_events_after_its_training_data() -> None:
    """A version that starts serving scores a backlog: the cold start its training left out
    (cards without a history: ``amount_last_3`` missing, 0) and its own training rows. They
    are not the world after training, so however they reach the loop they raise no alarm;
    the same cold start after the training data does."""
    rng = np.random.default_rng(4)
    trained_until = 10_000

    def references(model: str, version: int, sha256: str) -> VersionReference:
        sample = rng.lognormal(3.0, 1, 5000)
        features = {"amount_last_3": FeatureReference.from_sample("amount_last_3", sample)}
        return VersionReference(features, trained_until_ms=trained_until)

    handler = LoopHandler(references, LoopConfig(drift_window=300), clock=lambda: 5)
    handler.handle(
        "model-versions",
        ModelVersion(
            model="fraud", version=1, action="registered", artifact_sha256=SHA[1], event_time_ms=1
        ),
    )

    def serve(event_times: range, cold: bool) -> list[DriftAlarm]:
        out: list[Output] = []
        for t in event_times:
            value = 0.0 if cold else float(rng.lognormal(3.0, 1))
            prediction = Prediction(
                request_id=f"r{t}",
                entity_id="c",
                model="fraud",
                version=1,
                route="champion",
                output=0.1,
                features={"amount_last_3": value},
                event_time_ms=t,
                served_at_ms=50_000,
                latency_ms=1.0,
            )
            label = Label(
                request_id=f"r{t}", entity_id="c", label=1.0, event_time_ms=t, labeled_at_ms=t + 1
            )
            out += handler.handle("predictions", prediction) + handler.handle("labels", label)
        return [e for _, e in out if isinstance(e, DriftAlarm)]

    # the backlog: the cold start, then the training rows, every one of them a mistake
    assert serve(range(1, 601), cold=True) == []
    assert serve(range(601, trained_until + 1, 16), cold=False) == []
    assert handler.not_watched() == 600 + len(range(601, trained_until + 1, 16))
    # live, like the training data: nothing; a cold start now is a change of the world
    assert serve(range(trained_until + 1, trained_until + 601), cold=False) == []
    alarms = serve(range(trained_until + 601, trained_until + 901), cold=True)
    assert {(a.kind, a.feature) for a in alarms if a.kind == "data"} == {("data", "amount_last_3")}
