"""Bulkhead, per-call timeout and the fallback chain, with in-memory predictors."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from headwater.serving.bulkhead import Bulkhead
from headwater.serving.errors import ArtifactRefused, BulkheadFull, ModelRaised, ScoringTimeout
from headwater.serving.fallback import DEFAULT_VERSION, FallbackChain, Predictor
from headwater.serving.guard import GuardPolicy, VersionGuard


class Constant:
    feature_names: Sequence[str] = ("x",)

    def __init__(self, value: float, gate: threading.Event | None = None) -> None:
        self.value = value
        self.gate = gate
        self.failing = False

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait()
        if self.failing:
            raise ValueError("boom")
        return np.full(len(features), self.value)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # let hung calls finish so their threads end with the test


def test_bulkhead_refuses_past_its_limit_and_frees_on_release() -> None:
    bulkhead = Bulkhead(2)
    assert bulkhead.try_acquire() and bulkhead.try_acquire()
    assert not bulkhead.try_acquire()
    bulkhead.release()
    assert bulkhead.try_acquire()
    with pytest.raises(ValueError):
        Bulkhead(0)


def test_hung_call_times_out_and_holds_only_its_own_slot(gate: threading.Event) -> None:
    guard = VersionGuard("m", 1, GuardPolicy(timeout_s=0.05, max_concurrency=1))
    with pytest.raises(ScoringTimeout, match="m v1"):
        guard.call(Constant(1.0, gate).predict, np.ones((1, 1)))
    with pytest.raises(BulkheadFull):
        guard.call(Constant(1.0).predict, np.ones((1, 1)))
    gate.set()
    other = VersionGuard("m", 2, GuardPolicy(timeout_s=1.0, max_concurrency=1))
    assert other.call(Constant(2.0).predict, np.ones((1, 1))).tolist() == [2.0]
    guard.close()
    other.close()


def test_raising_model_is_named() -> None:
    failing = Constant(1.0)
    failing.failing = True
    guard = VersionGuard("m", 4, GuardPolicy())
    with pytest.raises(ModelRaised, match="m v4 raised ValueError: boom"):
        guard.call(failing.predict, np.ones((1, 1)))
    guard.close()


def test_fallback_goes_to_last_good_version_then_default(gate: threading.Event) -> None:
    models = {1: Constant(1.0), 2: Constant(2.0)}
    chain = FallbackChain("m", models.__getitem__, default_output=-1.0)
    x = [{"x": 1.0}] * 3
    assert chain.predict(1, x).outputs.tolist() == [1.0] * 3
    assert chain.predict(2, x).version == 2
    models[2].failing = True
    outcome = chain.predict(2, x)
    assert (outcome.version, outcome.fallback) == (1, True)
    assert "m v2 raised ValueError" in outcome.reason and "answered by v1" in outcome.reason
    models[1].failing = True
    outcome = chain.predict(2, x)
    assert (outcome.version, outcome.outputs.tolist()) == (DEFAULT_VERSION, [-1.0] * 3)
    assert outcome.fallback and "default output" in outcome.reason
    chain.close()


def test_unloadable_version_falls_back_with_the_loader_error() -> None:
    def load(version: int) -> Predictor:
        if version == 9:
            raise ArtifactRefused("artifact of m v9 is tampered")
        return Constant(float(version))

    chain = FallbackChain("m", load, default_output=0.0)
    chain.predict(1, [{"x": 1.0}])
    outcome = chain.predict(9, [{"x": 1.0}])
    assert outcome.version == 1 and "tampered" in outcome.reason
    chain.close()
