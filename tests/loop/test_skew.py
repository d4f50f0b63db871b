"""Training–serving skew: a unit-change bug on one path is reported, honest rounding is not."""

from __future__ import annotations

import numpy as np

from headwater.loop.skew import SkewMonitor

WINDOW = 200


def _features(amount: float, distance: float) -> dict[str, float]:
    return {"amount": amount, "log_amount": float(np.log1p(amount)), "distance_km": distance}


def test_unit_change_on_the_serving_path_is_reported_within_two_windows() -> None:
    rng = np.random.default_rng(21)
    monitor = SkewMonitor("fraud", 1, window=WINDOW)
    bug_at, first_alarm = 3_333, None
    for t in range(6_000):
        amount, distance = float(rng.lognormal(3, 1)), float(rng.exponential(5))
        offline = _features(amount, distance)
        # the bug: serving reads the amount in cents while the offline path uses units
        served = _features(amount * 100 if t >= bug_at else amount, distance)
        alarms = monitor.update(served, offline, t)
        if alarms and first_alarm is None:
            first_alarm = t
            assert {a.feature for a in alarms} == {"amount", "log_amount"}
            assert all(a.kind == "skew" and a.value > a.threshold for a in alarms)
    assert first_alarm is not None and bug_at <= first_alarm < bug_at + 2 * WINDOW


def test_float_noise_and_equal_paths_raise_nothing() -> None:
    rng = np.random.default_rng(22)
    monitor = SkewMonitor("fraud", 1, window=WINDOW)
    alarms = []
    for t in range(20_000):
        amount, distance = float(rng.lognormal(3, 1)), float(rng.exponential(5))
        offline = _features(amount, distance)
        served = {k: v * (1 + 1e-12) for k, v in offline.items()}
        alarms += monitor.update(served, offline, t)
    assert alarms == []


def test_a_feature_missing_on_the_serving_path_is_skew() -> None:
    monitor = SkewMonitor("fraud", 1, window=50)
    alarms = [
        a
        for t in range(50)
        for a in monitor.update({"amount": float(t)}, {"amount": float(t), "hour": 3.0}, t)
    ]
    assert {a.feature for a in alarms} == {"hour"} and monitor.missing_features == 50
