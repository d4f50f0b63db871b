"""The model registry: lifecycle commands checked against the fold, published as events.

:class:`ModelRegistry` holds a :class:`~headwater.trainers.registry_state.RegistryState` rebuilt
from the
``model-versions`` topic on start (:meth:`ModelRegistry.open`). A command is checked against the
state (and, for registering and promoting, against the artifact store's sha256), published
through the :class:`Publisher` seam (the :class:`~headwater.infra.event_bus.EventBus` in
production), and
then folded in — so the local view is exactly what a replay of the topic gives.

With a :class:`~headwater.trainers.registry_log.RegistryLog` (what :meth:`ModelRegistry.open`
gives), the registry catches up on the log before every command and reads its own event back
after it, so its view is never stale; a registration runs under the model's fence, so two
writers never get the same version number (see :mod:`headwater.trainers.registry_log`). A
command whose event the fold refused on reading it back raises a
:class:`~headwater.trainers.errors.RegistryError` naming the model version. Without a log (unit
tests, one writer) the registry folds its own events as it publishes them.

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

import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from headwater.core.settings import HeadwaterSettings
from headwater.schemas.models import ModelAction, ModelVersion
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.errors import ArtifactError, IllegalTransition, RegistryError
from headwater.trainers.registry_log import KafkaRegistryLog, RegistrationFenced, RegistryLog
from headwater.trainers.registry_state import RegistryState, VersionState

TOPIC = "model-versions"
REGISTER_ATTEMPTS = 10
CONFIRM_POLL_S = 0.05  # between reads of the log while an event it was given is not there yet
log = logging.getLogger(__name__)


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


P = ParamSpec("P")
R = TypeVar("R")


def _serialized(
    method: Callable[Concatenate[ModelRegistry, P], R],
) -> Callable[Concatenate[ModelRegistry, P], R]:
    """One command at a time per registry: the retrain worker runs retrains on threads, and the
    log's reader and the fold are not thread-safe."""

    def locked(registry: ModelRegistry, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with registry._lock:
            return method(registry, *args, **kwargs)

    functools.update_wrapper(locked, method)  # its name and docstring
    return locked


class ModelRegistry:
    """Registers model versions and moves them through their lifecycle."""

    def __init__(
        self,
        store: ArtifactStore,
        publisher: Publisher,
        state: RegistryState | None = None,
        clock: Callable[[], int] = _now_ms,
        log: RegistryLog | None = None,
        confirm_timeout_s: float = 30.0,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.state = state or RegistryState()
        self.log = log
        self.confirm_timeout_s = confirm_timeout_s
        self._clock = clock
        self._lock = threading.RLock()

    @classmethod
    def open(cls, settings: HeadwaterSettings) -> ModelRegistry:
        """The registry of these settings, following ``model-versions`` from its beginning."""
        from headwater.infra.event_bus import EventBus

        registry_log = KafkaRegistryLog(settings)
        registry = cls(
            ArtifactStore.from_settings(settings),
            EventBus(settings),
            log=registry_log,
            confirm_timeout_s=settings.kafka_timeout_s * 3,
        )
        registry.state.undecodable = registry_log.undecodable  # the same list, kept current
        registry.catch_up()
        return registry

    @_serialized
    def catch_up(self) -> RegistryState:
        """Fold every event appended to the log since the last catch-up (no log: nothing)."""
        if self.log is not None:
            self.state.replay(self.log.read_new())
        return self.state

    @_serialized
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
        self._verify_artifact(model, self.state.next_version(model), artifact_sha256)
        event = ModelVersion(
            model=model,
            version=1,  # numbered below, once the log was read
            action="registered",
            run_id=run_id,
            artifact_sha256=artifact_sha256,
            metrics=dict(metrics or {}),
            signature=dict(signature or {}),
            reason=reason,
            actor=actor,
            event_time_ms=self._clock(),
        )
        if self.log is None:
            return self._publish(
                event.model_copy(update={"version": self.state.next_version(model)})
            )
        fenced: RegistrationFenced | None = None
        for attempt in range(REGISTER_ATTEMPTS):
            if fenced is not None:
                # Each new fence fences the writer before it: writers that retried at once
                # would fence each other for ever. A random, growing pause lets one finish.
                time.sleep(random.uniform(0.5, 1.5) * min(0.2 * 2**attempt, 5.0))
            fence = self.log.fence(model)  # before catching up: what we read is then complete
            self.catch_up()
            numbered = self._stamped(
                event.model_copy(update={"version": self.state.next_version(model)})
            )
            self.state.check(numbered)
            try:
                fence.commit(numbered)
            except RegistrationFenced as error:
                fenced = error
                log.info("registering %s@%d: %s; trying again", model, numbered.version, error)
                continue
            return self._confirm(numbered)
        raise RegistryError(
            f"could not register a version of {model!r}: fenced {REGISTER_ATTEMPTS} times by "
            f"other writers of it ({fenced})"
        )

    @_serialized
    def promote(self, model: str, version: int, *, reason: str, actor: str) -> VersionState:
        """Make ``version`` the champion (its artifact is verified first)."""
        current = self.catch_up().version(model, version)
        self._verify_artifact(model, version, current.artifact_sha256)
        return self._transition(model, version, "promoted", reason=reason, actor=actor)

    @_serialized
    def canary(self, model: str, version: int, *, reason: str, actor: str) -> VersionState:
        current = self.catch_up().version(model, version)
        self._verify_artifact(model, version, current.artifact_sha256)
        return self._transition(model, version, "canary", reason=reason, actor=actor)

    @_serialized
    def shadow(self, model: str, version: int, *, reason: str, actor: str) -> VersionState:
        return self._transition(model, version, "shadow", reason=reason, actor=actor)

    @_serialized
    def rollback(
        self, model: str, version: int | None = None, *, reason: str, actor: str
    ) -> VersionState:
        """Roll back ``version`` (default: the champion); the previous champion serves again."""
        target = version if version is not None else self.catch_up().champion(model)
        if target is None:
            raise IllegalTransition(f"model {model!r} has no champion to roll back")
        return self._transition(model, target, "rolled_back", reason=reason, actor=actor)

    @_serialized
    def archive(self, model: str, version: int, *, reason: str, actor: str) -> VersionState:
        return self._transition(model, version, "archived", reason=reason, actor=actor)

    @_serialized
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

    def _stamped(self, event: ModelVersion) -> ModelVersion:
        # Strictly increasing times keep the replay's order (by event time) the command order.
        if event.event_time_ms <= self.state.last_event_ms:
            return event.model_copy(update={"event_time_ms": self.state.last_event_ms + 1})
        return event

    def _publish(self, event: ModelVersion) -> VersionState:
        self.catch_up()  # check against the log as it is now, not as it was at start
        event = self._stamped(event)
        self.state.check(event)  # refuse before anything reaches the log
        self.publisher.send(TOPIC, event)
        self.publisher.flush()
        if self.log is None:
            self.state.apply(event)
            return self.state.version(event.model, event.version)
        return self._confirm(event)

    def _confirm(self, event: ModelVersion) -> VersionState:
        """Read ``event`` back from the log: the fold must have applied it, not refused it.

        The log is read committed, and a transaction's commit marker reaches the partition a
        moment after ``commit_transaction`` returns: until then the end a read-committed
        reader is given stops before the record (as it does behind another writer's open
        transaction). So the log is read again until the event shows, for up to
        ``confirm_timeout_s``."""
        name = f"{event.model}@{event.version}"
        deadline = time.monotonic() + self.confirm_timeout_s
        while True:
            self.catch_up()
            for rejected in reversed(self.state.rejected):
                if rejected.event == event:
                    raise RegistryError(f"{event.action} {name} was refused: {rejected.reason}")
            try:
                current: VersionState | None = self.state.version(event.model, event.version)
            except RegistryError:
                current = None
            if current is not None and current.updated_at_ms >= event.event_time_ms:
                return self._applied(event, current)
            if time.monotonic() >= deadline:
                raise RegistryError(
                    f"{event.action} {name} was published but is not in model-versions when "
                    f"read back within {self.confirm_timeout_s:g} s; check the topic's readers "
                    "and retention"
                )
            time.sleep(CONFIRM_POLL_S)

    def _applied(self, event: ModelVersion, current: VersionState) -> VersionState:
        """``event`` as the log applied it; refused where another writer took its number."""
        name = f"{event.model}@{event.version}"
        if event.action == "registered" and current.artifact_sha256 != event.artifact_sha256:
            raise RegistryError(
                f"{name} is registered with artifact {current.artifact_sha256[:12]}, not "
                f"{event.artifact_sha256[:12]}: another writer took the number"
            )
        log.info("%s %s (%s) by %s", event.action, name, event.reason, event.actor or "?")
        return current

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
