"""The demo's observer: the timeline it reads from ``model-versions`` as any user could."""

from __future__ import annotations

from headwater.demo.observer import DemoObserver
from headwater.schemas.models import ModelVersion, RetrainRequest, Run


def _version(version: int, action: str, **metrics: float) -> ModelVersion:
    return ModelVersion.model_validate(
        {"model": "fraud", "version": version, "action": action, "metrics": metrics,
         "event_time_ms": 1}
    )  # fmt: skip


def _observe(*events: ModelVersion) -> DemoObserver:
    observer = DemoObserver("fraud", drift_at=100, produced=lambda: 200, clock=lambda: 5)
    for event in events:
        observer.handle("model-versions", event)
    return observer


def test_the_candidate_goes_through_the_controllers_steps_only() -> None:
    observer = _observe(
        _version(1, "registered"),
        _version(1, "promoted"),  # the bootstrap: the champion
        _version(2, "registered"),
        _version(2, "canary"),  # the hand-over into canary: no weight, not a step
        _version(2, "canary", weight=0.1),
        _version(2, "canary", weight=0.25),
        _version(2, "promoted"),
    )
    t = observer.timeline
    assert observer.champion == 1 and t.candidate is not None and t.candidate.version == 2
    assert t.canary_steps == [0.1, 0.25, 1.0]
    assert t.decision is not None and t.decision.action == "promoted"
    assert t.decision_events == 200


def test_a_candidate_that_reuses_the_champions_number_is_shown_as_it_is() -> None:
    observer = _observe(
        _version(1, "registered"), _version(1, "promoted"), _version(1, "registered")
    )
    assert observer.timeline.candidate is not None and observer.timeline.candidate.version == 1


def test_the_retrains_stages_come_from_its_own_events() -> None:
    observer = _observe(_version(1, "registered"), _version(1, "promoted"))
    request = RetrainRequest(
        request_id="r", model="fraud", reason="drift", requested_at_ms=1_000, trials=2
    )
    observer.handle("retrain-requests", request)
    for kind, status, at in (
        ("run", "started", 3_000),
        ("trial", "started", 10_000),
        ("trial", "pruned", 14_000),
        ("trial", "completed", 20_000),
    ):
        run = {"run_id": "x", "kind": kind, "model": "fraud", "status": status}
        observer.handle("runs", Run.model_validate({**run, "event_time_ms": at}))
    candidate = _version(2, "registered").model_copy(update={"event_time_ms": 21_500})
    observer.handle("model-versions", candidate)
    assert observer.timeline.retrain_stages() == {
        "to_run_start": 2.0,
        "to_first_trial": 7.0,
        "trials": 10.0,
        "to_registration": 1.5,
    }
