"""Hystrix patterns around real trained torch models: breaker, timeout, bulkhead, fallback,
and refusal of tampered or missing artifacts."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus, make_codec, read_topic
from headwater.serving.errors import ArtifactRefused
from headwater.serving.fallback import DEFAULT_VERSION, FallbackChain, Predictor
from headwater.serving.guard import GuardPolicy
from headwater.serving.routing import RoutingTable, publish_routing, routing_event
from headwater.serving.runtime import start_runtime
from headwater.serving.scorer import Scorer, ScoreRequest
from tests.serving.modelkit import FEATURES, Sabotaged, register_versions, train_bundle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # hung calls return, so their threads end


ROWS = [{name: float(i) / 10 for name in FEATURES} for i in range(4)]


def chain_of(models: dict[int, Predictor], policy: GuardPolicy) -> FallbackChain:
    return FallbackChain("fraud", models.__getitem__, default_output=0.25, policy=policy)


def test_breaker_opens_half_opens_and_closes_on_a_failing_model(
    release: threading.Event,
) -> None:
    clock = Clock()
    v1 = Sabotaged(train_bundle(1, "breaker"), release)
    v2 = Sabotaged(train_bundle(2, "breaker"), release)
    chain = chain_of({1: v1, 2: v2}, GuardPolicy(clock=clock))
    assert chain.predict(1, ROWS).version == 1  # v1 answered once: the last good version
    v2.mode = "raise"
    for _ in range(20):
        outcome = chain.predict(2, ROWS)
        assert (outcome.version, outcome.fallback) == (1, True)
        assert "weights exploded" in outcome.reason
    assert chain.guard(2).breaker.state == "open"
    v2.mode = "ok"
    outcome = chain.predict(2, ROWS)  # open: v2 is not even called
    assert outcome.fallback and "circuit breaker open" in outcome.reason
    clock.now += 5.0
    outcome = chain.predict(2, ROWS)  # half-open: the trial call succeeds and closes it
    assert (outcome.version, outcome.fallback) == (2, False)
    assert chain.guard(2).breaker.state == "closed"
    expected = v2.bundle.predict(np.array([[r[n] for n in FEATURES] for r in ROWS]))
    assert outcome.outputs.tolist() == pytest.approx(expected.tolist())
    chain.close()


def test_failed_half_open_trial_reopens(release: threading.Event) -> None:
    clock = Clock()
    v1 = Sabotaged(train_bundle(1, "reopen"), release)
    v1.mode = "raise"
    chain = chain_of({1: v1}, GuardPolicy(volume_threshold=2, clock=clock))
    for _ in range(2):
        assert chain.predict(1, ROWS).version == DEFAULT_VERSION
    clock.now += 5.0
    chain.predict(1, ROWS)
    assert chain.guard(1).breaker.state == "open"
    chain.close()


def test_hang_times_out_and_falls_back_without_stalling(release: threading.Event) -> None:
    v1 = Sabotaged(train_bundle(1, "hang"), release)
    v2 = Sabotaged(train_bundle(2, "hang"), release)
    policy = GuardPolicy(timeout_s=0.2, max_concurrency=2)
    chain = chain_of({1: v1, 2: v2}, policy)
    chain.predict(1, ROWS)
    v2.mode = "hang"
    timed_out = chain.predict(2, ROWS)
    assert (timed_out.version, timed_out.fallback) == (1, True)
    assert "no answer within 0.2 s" in timed_out.reason
    chain.predict(2, ROWS)  # the second hung call takes v2's last slot
    full = chain.predict(2, ROWS)  # the bulkhead refuses at once: no waiting on hung calls
    assert full.version == 1 and "concurrent slots taken" in full.reason
    v1.mode = "hang"
    both = chain.predict(2, ROWS)
    assert (both.version, both.outputs.tolist()) == (DEFAULT_VERSION, [0.25] * len(ROWS))
    chain.close()


def test_shadow_failure_is_never_returned_and_never_answers(release: threading.Event) -> None:
    v1 = Sabotaged(train_bundle(1, "shadow"), release)
    v2 = Sabotaged(train_bundle(2, "shadow"), release)
    table = RoutingTable()
    table.apply(routing_event("fraud", {1: 1.0}, shadows=[2]))
    scorer = Scorer("fraud", table, chain_of({1: v1, 2: v2}, GuardPolicy()))
    requests = [
        ScoreRequest(f"r{i}", f"e{i}", row, event_time_ms=0, received_at=0.0)
        for i, row in enumerate(ROWS)
    ]
    answers = scorer.answer(requests).predictions
    assert {(p.version, p.route) for p in answers} == {(1, "champion")}
    assert {(p.version, p.route) for p in scorer.shadow(requests)} == {(2, "shadow")}
    v2.mode = "raise"
    assert scorer.shadow(requests) == []
    assert scorer.counts.shadow_failures == 1
    assert not any(p.fallback for p in scorer.answer(requests).predictions)
    scorer.chain.close()


@pytest.mark.integration
def test_tampered_and_missing_artifacts_are_refused_with_an_event(
    topics: HeadwaterSettings, unique: str
) -> None:
    model = f"fraud-{unique}"
    registry, _ = register_versions(topics, model, unique, 3)
    tampered = registry.state.version(model, 2).artifact_sha256
    registry.store.path_of(tampered).write_bytes(b"not the weights that were registered")
    missing = registry.state.version(model, 3).artifact_sha256
    registry.store.path_of(missing).unlink()
    publish_routing(EventBus(topics), routing_event(model, {1: 0.5, 2: 0.5}, shadows=[3]))
    runtime = start_runtime(topics, model)
    try:
        assert {m.version for m in runtime.loader.cached()} == {1}
        with pytest.raises(ArtifactRefused, match=f"{model}@2.*{tampered}"):
            runtime.loader.get(model, 2)
        with pytest.raises(ArtifactRefused, match="not in the store"):
            runtime.loader.get(model, 3)
        scorer = runtime.scorer("kafka")
        requests = [
            ScoreRequest(f"r{i}", f"card-{i}", ROWS[i % 4], event_time_ms=0, received_at=0.0)
            for i in range(100)
        ]
        answers = scorer.answer(requests).predictions
        routed_to_2 = [p for p in answers if p.fallback]
        assert routed_to_2 and all(p.version == 1 for p in routed_to_2)
        assert all("artifact_tampered" not in p.fallback_reason for p in routed_to_2)
        assert all("hashes to" in p.fallback_reason for p in routed_to_2)
        assert scorer.shadow(requests) == []  # a refused shadow scores nothing

        codec = make_codec(topics)
        letters = [
            codec.decode(r.value)[1]
            for r in read_topic(topics, "deadletter", group=f"dl-{unique}", idle_timeout_s=2)
        ]
        codes = {(d["reason_code"], d["original_key"]) for d in letters}
        assert ("artifact_tampered", f"{model}@2".encode()) in codes
        assert ("artifact_missing", f"{model}@3".encode()) in codes
        assert len(letters) == 2  # reported once per version, not per request
    finally:
        runtime.stop()
