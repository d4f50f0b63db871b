"""The model registry's state as a pure fold of ``model-versions`` events.

:class:`RegistryState` knows nothing of Kafka: :meth:`RegistryState.apply` checks one
:class:`~headwater.schemas.models.ModelVersion` against the state so far and applies it, or raises
:class:`~headwater.trainers.errors.IllegalTransition` /
:class:`~headwater.trainers.errors.UnknownModelVersion`.
Replaying the topic is folding its events in order; the same object answers point-in-time
questions because it keeps the alias history.

Lifecycle: ``registered`` (next version number, with its artifact sha256) → ``canary`` /
``shadow`` → ``promoted`` (becomes the ``champion``) → ``rolled_back`` (the previous champion
serves again) → ``archived`` (final). ``alias`` events point ``champion`` / ``challenger`` at a
version.

>>> from headwater.schemas.models import ModelVersion
>>> state = RegistryState()
>>> state.apply(ModelVersion(model="m", version=1, action="registered",
...     artifact_sha256="a" * 64, event_time_ms=10))
>>> state.apply(ModelVersion(model="m", version=1, action="promoted", event_time_ms=20))
>>> state.champion("m"), state.champion_at("m", 15), state.champion_at("m", 20)
(1, None, 1)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from headwater.schemas.models import ModelVersion
from headwater.trainers.errors import IllegalTransition, RegistryError, UnknownModelVersion

Stage = Literal["registered", "canary", "shadow", "promoted", "rolled_back", "archived"]
ALIASES = ("champion", "challenger")


@dataclass(frozen=True)
class VersionState:
    """One model version as the fold sees it now."""

    model: str
    version: int
    stage: Stage
    run_id: str
    artifact_sha256: str
    metrics: dict[str, float]
    signature: dict[str, str]
    registered_at_ms: int
    updated_at_ms: int
    reason: str = ""
    actor: str = ""


@dataclass(frozen=True)
class AliasChange:
    """``alias`` pointed at ``version`` (None: at nothing) from ``at_ms`` on."""

    alias: str
    version: int | None
    at_ms: int


@dataclass(frozen=True)
class RejectedEvent:
    """An event in the log that the fold refused during a replay, with why."""

    event: ModelVersion
    reason: str


@dataclass
class _ModelState:
    versions: dict[int, VersionState] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    alias_history: list[AliasChange] = field(default_factory=list)
    champions: list[int] = field(default_factory=list)  # promotion order, for rollbacks


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


class RegistryState:
    """The fold of ``model-versions``: every model's versions, stages and aliases."""

    def __init__(self) -> None:
        self._models: dict[str, _ModelState] = {}
        self.rejected: list[RejectedEvent] = []
        self.undecodable: list[str] = []
        self.applied = 0
        self.last_event_ms = 0

    # -- reading ---------------------------------------------------------------------------
    def models(self) -> list[str]:
        return sorted(self._models)

    def versions(self, model: str) -> list[VersionState]:
        return [v for _, v in sorted(self._model(model).versions.items())]

    def version(self, model: str, version: int) -> VersionState:
        found = self._model(model).versions.get(version)
        if found is None:
            known = sorted(self._model(model).versions)
            raise UnknownModelVersion(f"{model}@{version} is not registered; versions: {known}")
        return found

    def aliases(self, model: str) -> dict[str, int]:
        return dict(self._model(model).aliases)

    def champion(self, model: str) -> int | None:
        return self._models[model].aliases.get("champion") if model in self._models else None

    def next_version(self, model: str) -> int:
        state = self._models.get(model)
        return max(state.versions, default=0) + 1 if state else 1

    def alias_at(self, model: str, alias: str, at_ms: int) -> int | None:
        """The version ``alias`` pointed at at time ``at_ms`` (None before any)."""
        current: int | None = None
        for change in self._model(model).alias_history:
            if change.at_ms > at_ms:
                break
            if change.alias == alias:
                current = change.version
        return current

    def champion_at(self, model: str, at_ms: int) -> int | None:
        """Which version served as champion at time ``at_ms``."""
        return self.alias_at(model, "champion", at_ms) if model in self._models else None

    def alias_history(self, model: str) -> list[AliasChange]:
        return list(self._model(model).alias_history)

    # -- folding ---------------------------------------------------------------------------
    def replay(self, events: Iterable[ModelVersion]) -> RegistryState:
        """Fold a log; events the fold refuses are kept in :attr:`rejected`, never dropped."""
        for event in events:
            try:
                self.apply(event)
            except RegistryError as error:
                self.rejected.append(RejectedEvent(event, str(error)))
        return self

    def check(self, event: ModelVersion) -> None:
        """Raise unless ``event`` is a legal next event; changes nothing."""
        self._transition(event, dry_run=True)

    def apply(self, event: ModelVersion) -> None:
        """Check and apply one event."""
        self._transition(event, dry_run=False)
        self.applied += 1
        self.last_event_ms = max(self.last_event_ms, event.event_time_ms)

    def _model(self, model: str) -> _ModelState:
        state = self._models.get(model)
        if state is None:
            raise UnknownModelVersion(
                f"model {model!r} has no registered versions; models: {self.models()}"
            )
        return state

    def _transition(self, event: ModelVersion, dry_run: bool) -> None:
        name = f"{event.model}@{event.version}"
        if event.action == "registered":
            self._check_register(event, name)
            if not dry_run:
                self._register(event)
            return
        current = self.version(event.model, event.version)
        if current.stage == "archived":
            raise IllegalTransition(f"{name} is archived; it cannot be {event.action} any more")
        if event.action == "alias":
            self._check_alias(event, name, current)
        elif event.action == "archived" and self.champion(event.model) == event.version:
            raise IllegalTransition(
                f"{name} is the champion; promote another version or roll it back before "
                "archiving it"
            )
        elif event.action == "rolled_back" and current.stage == "rolled_back":
            raise IllegalTransition(f"{name} is already rolled back")
        elif event.action in ("canary", "shadow") and self.champion(event.model) == event.version:
            # a late hand-over (the canary controller already promoted it) must not start a
            # second trial of the champion against itself
            raise IllegalTransition(f"{name} is the champion; it cannot be {event.action} again")
        if not dry_run:
            self._move(event, current)

    def _check_register(self, event: ModelVersion, name: str) -> None:
        expected = self.next_version(event.model)
        if event.version != expected:
            raise IllegalTransition(
                f"cannot register {name}: the next version of {event.model!r} is {expected}"
            )
        if not _is_sha256(event.artifact_sha256):
            raise IllegalTransition(
                f"cannot register {name}: artifact_sha256 {event.artifact_sha256!r} is not a "
                "lowercase hex sha256"
            )

    def _check_alias(self, event: ModelVersion, name: str, current: VersionState) -> None:
        if event.alias not in ALIASES:
            raise IllegalTransition(f"unknown alias {event.alias!r} for {name}; aliases: {ALIASES}")
        if current.stage == "rolled_back" and event.alias == "champion":
            raise IllegalTransition(f"{name} was rolled back; promote it to serve it again")

    def _register(self, event: ModelVersion) -> None:
        state = self._models.setdefault(event.model, _ModelState())
        state.versions[event.version] = VersionState(
            event.model,
            event.version,
            "registered",
            event.run_id,
            event.artifact_sha256,
            dict(event.metrics),
            dict(event.signature),
            event.event_time_ms,
            event.event_time_ms,
            event.reason,
            event.actor,
        )

    def _set_alias(self, state: _ModelState, alias: str, version: int | None, at_ms: int) -> None:
        if version is None:
            if state.aliases.pop(alias, None) is None:
                return
        elif state.aliases.get(alias) == version:
            return
        else:
            state.aliases[alias] = version
        state.alias_history.append(AliasChange(alias, version, at_ms))

    def _move(self, event: ModelVersion, current: VersionState) -> None:
        state = self._models[event.model]
        at = event.event_time_ms
        stage: Stage = current.stage
        if event.action == "alias":
            self._set_alias(state, event.alias, event.version, at)
        elif event.action in ("canary", "shadow"):
            stage = "canary" if event.action == "canary" else "shadow"
            self._set_alias(state, "challenger", event.version, at)
        elif event.action == "promoted":
            stage = "promoted"
            state.champions = [v for v in state.champions if v != event.version]
            state.champions.append(event.version)
            self._set_alias(state, "champion", event.version, at)
            if state.aliases.get("challenger") == event.version:
                self._set_alias(state, "challenger", None, at)
        elif event.action in ("rolled_back", "archived"):
            stage = "rolled_back" if event.action == "rolled_back" else "archived"
            self._step_away_from(state, event.version, at)
        state.versions[event.version] = replace(
            current, stage=stage, updated_at_ms=at, reason=event.reason, actor=event.actor
        )

    def _step_away_from(self, state: _ModelState, version: int, at_ms: int) -> None:
        """A rolled-back or archived version stops serving: the previous champion returns."""
        state.champions = [v for v in state.champions if v != version]
        if state.aliases.get("challenger") == version:
            self._set_alias(state, "challenger", None, at_ms)
        if state.aliases.get("champion") == version:
            previous = state.champions[-1] if state.champions else None
            self._set_alias(state, "champion", previous, at_ms)
