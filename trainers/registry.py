"""The model registry: lifecycle commands checked against the fold, published as events.

:class:`ModelRegistry` holds a :class:`~headwater.trainers.registry_state.RegistryState` rebuilt
from the
``model-versions`` topic on start (:meth:`ModelRegistry.open`). A command is checked against the
state (and, for registering and promoting, against the artifact store's sha256), published
through the :class:`Publisher` seam (the :class:`~headwater.infra.event_bus.EventBus` in
production), and
then folded in — so the local view is exactly what a replay of the topic gives.

Two writers racing to register the same version number both publish; the fold keeps the first
in log order and lists the second in :attr:`RegistryState.rejected`.

>>> import tempfile
>>> from pathlib import Path
>>> from headwater.trainers.artifacts import ArtifactStore
>>> store = ArtifactStore(Path(tempfile.mkdtemp()))
>>> registry = ModelRegistry(store, MemoryPublisher())
>>> v1 = registry.register("demo", store.put_bytes(b"w1"), run_id="r1", actor="doc")
>>> registry.promote("demo", v1.version, reason="first", actor="doc").stage
'promoted'
>>> registry.state.champion("demo")
1
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from headwater.core.settings import HeadwaterSettings
from headwater.schemas.models import ModelAction, ModelVersion
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.errors import ArtifactError, IllegalTransition
from headwater.trainers.registry_state import RegistryState, VersionState

TOPIC = "model-versions"


class Publisher(Protocol):
    """Where registry events go: the event bus, or a list in unit tests."""

    def send(self, topic: str, event: ModelVersion) -> None: ...

    def flush(self, timeout_s: float | None = None) -> None: ...


class MemoryPublisher:
    """An in-memory :class:`Publisher` for tests and doctests."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def send(self, topic: str, event: Any) -> None:
        self.events.append(event)

    def flush(self, timeout_s: float | None = None) -> None:
        return None


def _now_ms() -> int:
    return int(time.time() * 1000)


class ModelRegistry:
    """Registers model versions and moves them through their lifecycle."""

    def __init__(
        self,
        store: ArtifactStore,
        publisher: Publisher,
        state: RegistryState | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.state = state or RegistryState()
        self._clock = clock

    @classmethod
    def open(cls, settings: HeadwaterSettings) -> ModelRegistry:
        """The registry of these settings, its state rebuilt by replaying ``model-versions``."""
        from headwater.infra.event_bus import EventBus

        bus = EventBus(settings)
        return cls(ArtifactStore.from_settings(settings), bus, replay_state(settings))

    def register(
        self,
        model: str,
        artifact_sha256: str,
        *,
        run_id: str = "",
        metrics: Mapping[str, float] | None = None,
        signature: Mapping[str, str] | None = None,
        reason: str = "",
        actor: str = "",
    ) -> VersionState:
        """Register the next version of ``model``; its artifact must be stored and intact."""
        version = self.state.next_version(model)
        self._verify_artifact(model, version, artifact_sha256)
        event = ModelVersion(
            model=model,
            version=version,
            action="registered",
            run_id=run_id,
            artifact_sha256=artifact_sha256,
            metrics=dict(metrics or {}),
            signature=dict(signature or {}),
            reason=reason,
            actor=actor,
            event_time_ms=self._clock(),
        )
        return self._publish(event)

    def promote(self, model: str, version: int, *, reason: str, actor: str) -> VersionState:
        """Make ``version`` the champion (its artifact is verified first)."""
        current = self.state.version(model, version)
        self._verify_artifact(model, version, current.artifact_sha256)
        return self._transition(model, version, "promoted", reason=reason, actor=actor)

    def canary(self, model: str, version: int, *, reason: str, actor: str) -> VersionState:
        current = self.state.version(model, version)
        self._verify_artifact(model, version, current.artifact_sha256)
        return self._transition(model, version, "canary", reason=reason, actor=actor)

    def shadow(self, model: str, version: int, *, reason: str, actor: str) -> VersionState:
        return self._transition(model, version, "shadow", reason=reason, actor=actor)

    def rollback(
        self, model: str, version: int | None = None, *, reason: str, actor: str
    ) -> VersionState:
        """Roll back ``version`` (default: the champion); the previous champion serves again."""
        target = version if version is not None else self.state.champion(model)
        if target is None:
            raise IllegalTransition(f"model {model!r} has no champion to roll back")
        return self._transition(model, target, "rolled_back", reason=reason, actor=actor)

    def archive(self, model: str, version: int, *, reason: str, actor: str) -> VersionState:
        return self._transition(model, version, "archived", reason=reason, actor=actor)

    def set_alias(
        self, model: str, version: int, alias: str, *, reason: str, actor: str
    ) -> VersionState:
        return self._transition(model, version, "alias", alias=alias, reason=reason, actor=actor)

    def _transition(
        self,
        model: str,
        version: int,
        action: ModelAction,
        *,
        reason: str,
        actor: str,
        alias: str = "",
    ) -> VersionState:
        event = ModelVersion(
            model=model,
            version=version,
            action=action,
            alias=alias,
            reason=reason,
            actor=actor,
            event_time_ms=self._clock(),
        )
        return self._publish(event)

    def _publish(self, event: ModelVersion) -> VersionState:
        # Strictly increasing times keep the replay's order (by event time) the command order.
        if event.event_time_ms <= self.state.last_event_ms:
            event = event.model_copy(update={"event_time_ms": self.state.last_event_ms + 1})
        self.state.check(event)  # refuse before anything reaches the log
        self.publisher.send(TOPIC, event)
        self.publisher.flush()
        self.state.apply(event)
        return self.state.version(event.model, event.version)

    def _verify_artifact(self, model: str, version: int, sha256: str) -> None:
        try:
            self.store.verify(sha256)
        except ArtifactError as error:
            raise IllegalTransition(f"refusing {model}@{version}: {error}") from None


def replay_state(settings: HeadwaterSettings) -> RegistryState:
    """The registry state folded from the whole ``model-versions`` topic.

    Versions of one model live on different partitions (the key is ``model@version``), so the
    events are ordered by event time, then partition and offset, before folding."""
    from headwater.trainers.topic_log import read_events

    good, bad = read_events(settings, TOPIC, ModelVersion)
    good.sort(key=lambda pair: (pair[1].event_time_ms, pair[0].partition, pair[0].offset))
    state = RegistryState().replay(event for _, event in good)
    state.undecodable = [f"{r.partition}@{r.offset}: {why}" for r, why in bad]
    return state
