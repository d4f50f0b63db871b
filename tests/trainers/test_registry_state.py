"""The registry as a pure fold: lifecycle, aliases, point-in-time queries, illegal transitions."""

from __future__ import annotations

from pathlib import Path

import pytest

from headwater.schemas.models import ModelAction, ModelVersion
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.errors import IllegalTransition, UnknownModelVersion
from headwater.trainers.registry import MemoryPublisher, ModelRegistry
from headwater.trainers.registry_state import RegistryState

SHA = "ab" * 32


def _event(version: int, action: ModelAction, at: int, alias: str = "") -> ModelVersion:
    sha = SHA if action == "registered" else ""
    return ModelVersion(
        model="m",
        version=version,
        action=action,
        artifact_sha256=sha,
        event_time_ms=at,
        alias=alias,
    )


def _history() -> list[ModelVersion]:
    return [
        _event(1, "registered", 10),
        _event(1, "promoted", 20),
        _event(2, "registered", 30),
        _event(2, "canary", 40),
        _event(2, "promoted", 50),
        _event(2, "rolled_back", 60),
        _event(3, "registered", 70),
        _event(3, "archived", 80),
    ]


def test_the_fold_follows_the_lifecycle() -> None:
    state = RegistryState().replay(_history())
    assert state.rejected == []
    assert [(v.version, v.stage) for v in state.versions("m")] == [
        (1, "promoted"),
        (2, "rolled_back"),
        (3, "archived"),
    ]
    assert state.champion("m") == 1  # the rollback brought version 1 back
    assert state.aliases("m") == {"champion": 1}
    assert state.next_version("m") == 4


def test_point_in_time_champion() -> None:
    state = RegistryState().replay(_history())
    assert [state.champion_at("m", t) for t in (5, 20, 45, 50, 59, 60, 100)] == [
        None,
        1,
        1,
        2,
        2,
        1,
        1,
    ]
    assert state.alias_at("m", "challenger", 45) == 2
    assert state.alias_at("m", "challenger", 50) is None
    assert state.champion_at("unknown", 10) is None


def test_replaying_the_same_log_gives_the_same_state() -> None:
    a, b = RegistryState().replay(_history()), RegistryState().replay(_history())
    assert a.versions("m") == b.versions("m")
    assert a.alias_history("m") == b.alias_history("m")


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (_event(5, "promoted", 90), "m@5 is not registered"),
        (_event(3, "promoted", 90), "m@3 is archived"),
        (_event(1, "archived", 90), "is the champion"),
        (_event(2, "rolled_back", 90), "already rolled back"),
        (_event(7, "registered", 90), "next version of 'm' is 4"),
        (_event(1, "alias", 90, alias="king"), "unknown alias"),
        (_event(2, "alias", 90, alias="champion"), "was rolled back"),
    ],
)
def test_illegal_transitions_are_refused_with_the_reason(event: ModelVersion, message: str) -> None:
    state = RegistryState().replay(_history())
    with pytest.raises((IllegalTransition, UnknownModelVersion), match=message):
        state.apply(event)
    assert state.champion("m") == 1


def test_a_replay_keeps_refused_events_instead_of_dropping_them() -> None:
    log = [*_history(), _event(9, "promoted", 95)]
    state = RegistryState().replay(log)
    assert [r.event.version for r in state.rejected] == [9]
    assert "not registered" in state.rejected[0].reason


def test_registration_needs_a_sha256() -> None:
    bad = ModelVersion(model="m", version=1, action="registered", event_time_ms=1)
    with pytest.raises(IllegalTransition, match="not a lowercase hex sha256"):
        RegistryState().apply(bad)


def test_the_registry_refuses_a_tampered_or_missing_artifact(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    publisher = MemoryPublisher()
    registry = ModelRegistry(store, publisher)
    with pytest.raises(IllegalTransition, match="not in the store"):
        registry.register("m", "cd" * 32, actor="test")
    digest = store.put_bytes(b"weights")
    v1 = registry.register("m", digest, run_id="run-1", metrics={"auc": 0.9}, actor="test")
    assert (v1.version, v1.stage, v1.metrics) == (1, "registered", {"auc": 0.9})
    store.path_of(digest).write_bytes(b"tampered")
    with pytest.raises(IllegalTransition, match=f"refusing m@1: artifact {digest}"):
        registry.promote("m", 1, reason="try", actor="test")
    assert [e.action for e in publisher.events] == ["registered"]  # nothing illegal published


def test_published_events_fold_to_the_registry_state(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    publisher = MemoryPublisher()
    clock = iter(range(100, 200)).__next__
    registry = ModelRegistry(store, publisher, clock=clock)
    for weights in (b"a", b"b"):
        registry.register("m", store.put_bytes(weights), actor="test")
    registry.promote("m", 1, reason="first", actor="alice")
    registry.canary("m", 2, reason="try", actor="bob")
    registry.promote("m", 2, reason="better", actor="bob")
    registry.rollback("m", reason="worse live", actor="carol")
    rebuilt = RegistryState().replay(publisher.events)
    assert rebuilt.versions("m") == registry.state.versions("m")
    assert rebuilt.champion("m") == 1
    assert rebuilt.version("m", 2).reason == "worse live"
    assert rebuilt.version("m", 2).actor == "carol"
