"""The fallback chain of one model: the routed version, then the last good one, then a default.

Every version sits behind its own :class:`~headwater.serving.guard.VersionGuard`. When the routed
version
fails (raises, hangs past its timeout, has its breaker open or its bulkhead full, or cannot be
loaded), the most recent *other* version that answered is asked; if that fails too, the model's
declared default output answers. Whatever answered instead is flagged ``fallback`` with the
reason, so it is never mistaken for the routed version's own output.

>>> import numpy as np
>>> class Doubler:
...     feature_names = ("x",)
...     def predict(self, x: np.ndarray) -> np.ndarray:
...         return x[:, 0] * 2
>>> chain = FallbackChain("fraud", lambda version: Doubler(), default_output=0.5)
>>> outcome = chain.predict(3, [{"x": 1.0}, {"x": 2.5}])
>>> outcome.outputs.tolist(), outcome.feature_names
([2.0, 5.0], ('x',))
>>> chain.close()
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from headwater.core.errors import HeadwaterError
from headwater.serving.errors import ModelRaised
from headwater.serving.features import feature_matrix
from headwater.serving.guard import Array, GuardPolicy, VersionGuard

DEFAULT_VERSION = 0  # the version number predictions answered by the default output carry
Rows = Sequence[Mapping[str, float]]


class Predictor(Protocol):
    """What serving needs of a loaded model: its input columns and a batch predict."""

    @property
    def feature_names(self) -> Sequence[str]: ...

    def predict(self, features: Array) -> Array: ...


def cannot_block(predictor: Predictor) -> bool:
    """Whether ``predictor`` says its ``predict`` cannot block (its ``cannot_block`` is True),
    so its guard runs it on the caller's thread; any other predictor gets a thread of its own.

    >>> class Plain:
    ...     feature_names = ("x",)
    ...     def predict(self, x: Array) -> Array:
    ...         return x[:, 0]
    >>> cannot_block(Plain())
    False
    """
    return getattr(predictor, "cannot_block", False) is True


@dataclass(frozen=True)
class Outcome:
    """Who answered a batch and which features it read: ``version`` is :data:`DEFAULT_VERSION`
    and ``feature_names`` is None when the default output answered."""

    outputs: Array
    version: int
    feature_names: tuple[str, ...] | None
    fallback: bool = False
    reason: str = ""


class FallbackChain:
    """Guards and fallbacks of one model; ``load(version)`` gives a version's predictor (cached
    by the caller) or raises a :class:`HeadwaterError` saying why it cannot."""

    def __init__(
        self,
        model: str,
        load: Callable[[int], Predictor],
        *,
        default_output: float,
        policy: GuardPolicy | None = None,
    ) -> None:
        self.model = model
        self.load = load
        self.default_output = default_output
        self.policy = policy or GuardPolicy()
        self._guards: dict[int, VersionGuard] = {}
        self._good: list[int] = []  # versions that answered, most recent first
        self._lock = threading.Lock()

    def guard(self, version: int) -> VersionGuard:
        with self._lock:
            if version not in self._guards:
                self._guards[version] = VersionGuard(self.model, version, self.policy)
            return self._guards[version]

    def attempt(self, version: int, rows: Rows) -> Outcome:
        """One guarded call of ``version``; raises why it failed (no fallback here)."""
        predictor = self.load(version)
        names = tuple(predictor.feature_names)
        matrix = feature_matrix(names, rows)
        raw = self.guard(version).call(predictor.predict, matrix, on_caller=cannot_block(predictor))
        outputs = np.asarray(raw, dtype=np.float64).reshape(-1)
        if outputs.shape[0] != len(rows) or not np.all(np.isfinite(outputs)):
            raise ModelRaised(
                f"{self.model} v{version} gave {outputs.shape[0]} output(s) for {len(rows)} "
                "row(s) or a non-finite one"
            )
        return Outcome(outputs, version, names)

    def predict(self, version: int, rows: Rows) -> Outcome:
        """The routed version's outputs, or the chain's fallback flagged with the reason."""
        try:
            outcome = self.attempt(version, rows)
        except HeadwaterError as error:
            return self._fall_back(version, rows, str(error))
        self._mark_good(version)
        return outcome

    def _fall_back(self, failed: int, rows: Rows, reason: str) -> Outcome:
        with self._lock:
            previous = next((v for v in self._good if v != failed), None)
        if previous is not None:
            try:
                answer = self.attempt(previous, rows)
                why = f"{reason}; answered by v{previous}"
                return Outcome(answer.outputs, previous, answer.feature_names, True, why)
            except HeadwaterError as error:
                reason = f"{reason}; last good v{previous} failed too: {error}"
        return self.default_outcome(len(rows), reason)

    def default_outcome(self, count: int, reason: str) -> Outcome:
        """The declared default output for ``count`` requests, flagged with ``reason``."""
        default = np.full(count, self.default_output, dtype=np.float64)
        return Outcome(default, DEFAULT_VERSION, None, True, f"{reason}; default output answered")

    def _mark_good(self, version: int) -> None:
        with self._lock:
            if self._good and self._good[0] == version:
                return
            self._good = [version, *(v for v in self._good if v != version)][:8]

    def breaker_states(self) -> dict[int, str]:
        """Each guarded version's breaker state (for ``GET /models``)."""
        with self._lock:
            return {v: g.breaker.state for v, g in sorted(self._guards.items())}

    def forget(self, version: int) -> None:
        """Drop a version's guard (it was unloaded or archived)."""
        with self._lock:
            guard = self._guards.pop(version, None)
            self._good = [v for v in self._good if v != version]
        if guard is not None:
            guard.close()

    def close(self) -> None:
        with self._lock:
            guards, self._guards = list(self._guards.values()), {}
        for guard in guards:
            guard.close()
