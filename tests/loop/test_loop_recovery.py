"""The loop keeps trying until quality recovers: re-asks after the cooldown, at once after a
rollback, stops at the cap with an alarm, and says every decision in its log."""

from __future__ import annotations

import logging

import pytest

from headwater.loop.canary import CanaryConfig
from headwater.loop.loop_handler import LoopConfig, LoopHandler
from headwater.loop.retrain_policy import CAP_STATISTIC
from headwater.schemas.models import DriftAlarm, RetrainRequest
from tests.loop.test_loop_handler import World, _references


def _config(max_requests: int = 2) -> LoopConfig:
    return LoopConfig(
        drift_window=300,
        retrain_min_alarms=3,
        retrain_sustain_ms=600_000,
        retrain_cooldown_ms=200_000,  # 2 000 events at 100 ms each
        retrain_max_requests=max_requests,
        canary=CanaryConfig(min_outcomes_per_step=60),
    )


def _requests(world: World) -> list[RetrainRequest]:
    return [e for _, e in world.out if isinstance(e, RetrainRequest)]


def _cap_alarms(world: World) -> list[DriftAlarm]:
    return [e for _, e in world.out if isinstance(e, DriftAlarm) and e.statistic == CAP_STATISTIC]


def test_a_degraded_model_is_asked_for_again_until_the_cap_then_an_alarm(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [0]
    handler = LoopHandler(_references, _config(), clock=lambda: clock[0])
    world = World(handler, clock)
    world.register(1)
    world.traffic(3_000, drifted=False)
    with caplog.at_level(logging.INFO, logger="headwater.loop"):
        world.traffic(1_500, drifted=True)  # detected; no retrain ever arrives
        assert len(_requests(world)) == 1
        first = _requests(world)[0].requested_at_ms
        world.traffic(6_000, drifted=True)  # 600 s: three cooldowns, detectors long quiet
    requests = _requests(world)
    assert len(requests) == 2  # the cap
    assert requests[1].reason.startswith("still degraded")
    assert requests[1].requested_at_ms - first >= 200_000  # not before the cooldown
    assert requests[1].requested_at_ms - first <= 200_000 + 1_000  # nor long after it
    assert requests[1].since_ms == requests[0].since_ms > 0
    [cap] = _cap_alarms(world)  # once, not on every tick
    assert cap.model == "fraud" and cap.value == 2 and cap.severity == "critical"
    text = caplog.text
    assert "alarm concept on fraud@1" in text and "threshold" in text
    assert "retrain requested for fraud" in text and "still degraded" in text
    assert "cannot be fixed by retraining" in text


def test_a_rollback_asks_again_at_once_and_a_good_promotion_ends_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [0]
    handler = LoopHandler(_references, _config(max_requests=3), clock=lambda: clock[0])
    world = World(handler, clock)
    world.register(1)
    world.traffic(3_000, drifted=False)
    world.traffic(1_500, drifted=True)
    assert len(_requests(world)) == 1
    # the retrained version 2 is worse still: the canary rolls it back
    world.bad_versions = {2}
    with caplog.at_level(logging.INFO, logger="headwater.loop"):
        world.register(2)
        rolled_at = None
        for _ in range(80):
            world.traffic(50, drifted=True)
            if any(d.action == "rolled_back" for d in handler.decisions):
                rolled_at = world.t
                break
        assert rolled_at is not None
        world.traffic(50, drifted=True)
    requests = _requests(world)
    assert len(requests) == 2, "a rollback ends the cooldown: the policy asks again"
    assert requests[1].requested_at_ms - requests[0].requested_at_ms < 200_000
    assert "canary canary fraud@2" in caplog.text and "evidence" in caplog.text
    assert "canary rolled_back fraud@2" in caplog.text
    # version 3 is good: promoted, and the loop stops asking
    world.register(3)
    world.traffic(8_000, drifted=True)
    assert handler.registry.champion("fraud") == 3
    assert len(_requests(world)) == 2 and _cap_alarms(world) == []
    assert not handler.policies["fraud"].degraded
