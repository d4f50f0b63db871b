"""Retraining policy: sustained alarms fire, single ones don't, a flapping detector can't storm."""

from __future__ import annotations

import itertools
from typing import Literal

from headwater.loop.retrain_policy import RetrainPolicy
from headwater.schemas.models import DriftAlarm

MINUTE = 60_000


def _alarm(
    i: int,
    t: int,
    kind: Literal["data", "skew", "concept", "quality"] = "data",
    severity: Literal["warning", "critical"] = "warning",
) -> DriftAlarm:
    return DriftAlarm(
        alarm_id=f"a{i}",
        model="fraud",
        feature="amount",
        kind=kind,
        statistic="psi",
        value=1.0,
        threshold=0.1,
        window_size=500,
        window_start_ms=t,
        window_end_ms=t,
        severity=severity,
        detected_at_ms=t,
    )


def test_a_flapping_detector_cannot_start_a_retrain_storm() -> None:
    policy = RetrainPolicy(
        "fraud",
        min_alarms=3,
        sustain_ms=5 * MINUTE,
        cooldown_ms=60 * MINUTE,
        max_requests=3,
        cap_period_ms=24 * 60 * MINUTE,
    )
    # an alarm every 10 s for two days
    requests = [r for i in range(17_280) if (r := policy.observe(_alarm(i, i * 10_000)))]
    times = [r.requested_at_ms for r in requests]
    assert all(b - a >= 60 * MINUTE for a, b in itertools.pairwise(times))
    per_day = [
        sum(1 for t in times if day * 1440 * MINUTE <= t < (day + 1) * 1440 * MINUTE)
        for day in range(2)
    ]
    assert max(per_day) <= 3 and len(requests) <= 6
    assert policy.suppressed > 10_000


def test_isolated_alarms_never_fire_and_sustained_ones_do_with_their_ids() -> None:
    policy = RetrainPolicy("fraud", min_alarms=3, sustain_ms=5 * MINUTE)
    isolated = [policy.observe(_alarm(i, i * 10 * MINUTE)) for i in range(50)]
    assert isolated == [None] * 50
    assert policy.observe(_alarm(100, 600 * MINUTE)) is None
    assert policy.observe(_alarm(100, 600 * MINUTE + 1)) is None  # a duplicate counts once
    assert policy.observe(_alarm(101, 601 * MINUTE)) is None
    request = policy.observe(_alarm(102, 602 * MINUTE))
    assert request is not None and request.alarm_ids == ["a100", "a101", "a102"]
    assert request.model == "fraud" and request.trials > 0


def test_critical_quality_alarms_count_double_and_skew_never_retrains() -> None:
    policy = RetrainPolicy("fraud", min_alarms=4, sustain_ms=5 * MINUTE)
    assert all(
        policy.observe(_alarm(i, i * 1000, kind="skew", severity="critical")) is None
        for i in range(20)
    )
    assert policy.observe(_alarm(50, 0, kind="quality", severity="critical")) is None
    request = policy.observe(_alarm(51, 1000, kind="concept", severity="critical"))
    assert request is not None and request.reason.startswith("quality drop")


def test_a_request_trains_from_the_latest_change_point_of_its_concept_alarms() -> None:
    policy = RetrainPolicy("fraud", min_alarms=3, sustain_ms=5 * MINUTE)
    changes = [_alarm(1, 1000, kind="concept"), _alarm(2, 2000, kind="concept")]
    changes = [
        a.model_copy(update={"window_start_ms": s})
        for a, s in zip(changes, (400, 700), strict=True)
    ]
    assert [policy.observe(a) for a in changes] == [None, None]
    request = policy.observe(_alarm(3, 3000, kind="data"))  # windows on the loop's clock
    assert request is not None and request.since_ms == 700
    data_only = RetrainPolicy("fraud", min_alarms=2, sustain_ms=5 * MINUTE)
    data_only.observe(_alarm(4, 1000))
    request = data_only.observe(_alarm(5, 2000))
    assert request is not None and request.since_ms == 0
