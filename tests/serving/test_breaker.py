"""The circuit breaker's states on an injected clock (no sleeps)."""

from __future__ import annotations

from headwater.serving.breaker import CircuitBreaker


def state(breaker: CircuitBreaker) -> str:
    return breaker.state  # a call, so mypy does not narrow the property between checks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stays_closed_below_the_volume_threshold_even_if_all_fail() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock=clock)
    for _ in range(19):
        assert breaker.allow()
        breaker.record(False)
    assert state(breaker) == "closed"
    breaker.record(False)
    assert state(breaker) == "open"


def test_opens_at_half_errors_and_not_below() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock=clock)
    for i in range(20):
        breaker.record(i % 2 == 0 or i == 19)  # 9 failures in 20 calls
    assert state(breaker) == "closed"
    breaker.record(False)  # 10 of 21
    assert state(breaker) == "closed"
    breaker.record(False)  # 11 of 22
    assert state(breaker) == "open"


def test_old_outcomes_leave_the_rolling_window() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock=clock)
    for _ in range(15):
        breaker.record(False)
    clock.now += 10.0
    for _ in range(10):
        breaker.record(False)  # only these 10 are in the window: below the volume threshold
    assert state(breaker) == "closed"


def test_half_open_after_the_sleep_window_then_close_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock=clock)
    for _ in range(20):
        breaker.record(False)
    assert not breaker.allow()
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()
    assert state(breaker) == "half_open"
    assert not breaker.allow()  # one trial at a time
    breaker.record(True)
    assert state(breaker) == "closed"
    assert breaker.allow()


def test_failed_trial_reopens_for_another_sleep_window() -> None:
    clock = Clock()
    breaker = CircuitBreaker(volume_threshold=2, sleep_window_s=1.0, clock=clock)
    breaker.record(False)
    breaker.record(False)
    clock.now += 1.0
    assert breaker.allow()
    breaker.record(False)
    assert state(breaker) == "open"
    assert not breaker.allow()
    clock.now += 1.0
    assert breaker.allow()


def test_late_outcomes_while_open_change_nothing() -> None:
    clock = Clock()
    breaker = CircuitBreaker(volume_threshold=2, clock=clock)
    breaker.record(False)
    breaker.record(False)
    breaker.record(True)
    assert state(breaker) == "open"
