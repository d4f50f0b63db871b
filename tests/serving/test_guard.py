"""Bulkhead, per-call timeout and the fallback chain, with in-memory predictors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from headwater.serving.bulkhead import Bulkhead
from headwater.serving.errors import (
    ArtifactRefused,
    BulkheadFull,
    CircuitOpen,
    ModelRaised,
    ScoringTimeout,
)
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


class Arithmetic(Constant):
    """A predictor that says it cannot block: its guard runs it on the caller's thread."""

    cannot_block = True

    def __init__(self, value: float, took_s: float = 0.0) -> None:
        super().__init__(value)
        self.took_s = took_s
        self.threads: list[int] = []

    def predict(self, features: np.ndarray) -> np.ndarray:
        self.threads.append(threading.get_ident())
        if self.took_s:
            time.sleep(self.took_s)  # a slow machine, not a hang: the call returns
        return super().predict(features)


def test_a_predictor_that_cannot_block_runs_on_the_callers_thread_under_the_same_guards() -> None:
    guard = VersionGuard("m", 5, GuardPolicy(timeout_s=0.05, max_concurrency=1, volume_threshold=3))
    quick = Arithmetic(1.0)
    assert guard.call(quick.predict, np.ones((2, 1)), on_caller=True).tolist() == [1.0, 1.0]
    assert quick.threads == [threading.get_ident()]
    assert guard.bulkhead.try_acquire()  # its slot was given back
    guard.bulkhead.release()

    late = Arithmetic(1.0, took_s=0.08)
    with pytest.raises(ScoringTimeout, match=r"m v5: answered after 0\.\d+ s, past its 0\.05 s"):
        guard.call(late.predict, np.ones((1, 1)), on_caller=True)
    quick.failing = True
    with pytest.raises(ModelRaised, match="m v5 raised ValueError: boom"):
        guard.call(quick.predict, np.ones((1, 1)), on_caller=True)
    assert guard.breaker.state == "open"  # the late answer and the raise both counted
    with pytest.raises(CircuitOpen):
        guard.call(Arithmetic(1.0).predict, np.ones((1, 1)), on_caller=True)
    assert guard.bulkhead.try_acquire()
    guard.close()


def test_the_chain_runs_only_predictors_that_cannot_block_on_its_callers_thread() -> None:
    models: dict[int, Constant] = {1: Arithmetic(1.0), 2: Arithmetic(2.0, took_s=1.2)}
    chain = FallbackChain("m", models.__getitem__, default_output=-1.0)
    x = [{"x": 1.0}]
    assert chain.predict(1, x).outputs.tolist() == [1.0]
    outcome = chain.predict(2, x)  # answered late (past the default 1 s): v1 answers instead
    assert (outcome.version, outcome.fallback) == (1, True)
    assert "m v2: answered after" in outcome.reason
    arithmetic = models[1]
    assert isinstance(arithmetic, Arithmetic)
    assert set(arithmetic.threads) == {threading.get_ident()}
    models[3] = Constant(3.0)
    seen: list[int] = []
    plain = models[3]
    original = plain.predict

    def recorded(features: np.ndarray) -> np.ndarray:
        seen.append(threading.get_ident())
        return original(features)

    plain.predict = recorded  # type: ignore[method-assign]
    assert chain.predict(3, x).outputs.tolist() == [3.0]
    assert seen and threading.get_ident() not in seen  # a guard thread ran it
    chain.close()
