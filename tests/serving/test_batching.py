"""The adaptive batch policy: bounded by size and latency, adapted to observed costs."""

from __future__ import annotations

from headwater.serving.batching import BatchPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_batch_limit_shrinks_when_items_are_expensive() -> None:
    policy = BatchPolicy(max_batch_size=64, max_latency_s=0.010, clock=Clock())
    assert policy.batch_limit == 64
    policy.observed(1, 0.001)
    for _ in range(10):
        policy.observed(32, 0.0005 + 32 * 0.0005)  # 0.5 ms fixed, 0.5 ms per item
    assert policy.batch_limit == 10  # 5 ms of per-item work at 0.5 ms each


def test_never_below_one_or_above_the_maximum() -> None:
    policy = BatchPolicy(max_batch_size=4, max_latency_s=0.001, clock=Clock())
    policy.observed(2, 1.0)
    assert policy.batch_limit == 1
    slow_start = BatchPolicy(max_batch_size=64, max_latency_s=0.010, clock=Clock())
    slow_start.observed(1, 0.020)  # a fixed cost over budget does not shrink batches
    slow_start.observed(40, 0.021)
    assert slow_start.batch_limit == 64
    cheap = BatchPolicy(max_batch_size=4, max_latency_s=1.0, clock=Clock())
    cheap.observed(4, 1e-6)
    assert cheap.batch_limit == 4


def test_waits_under_load_until_the_deadline() -> None:
    clock = Clock()
    policy = BatchPolicy(max_batch_size=64, max_latency_s=0.010, clock=clock)
    for _ in range(50):
        policy.arrived()
        clock.now += 0.0002
    oldest = clock.now
    assert not policy.should_dispatch(3, oldest)
    assert 0 < policy.wait_s(oldest, 3) <= 0.010
    clock.now += 0.010
    assert policy.should_dispatch(3, oldest)


def test_sparse_arrivals_dispatch_at_once() -> None:
    clock = Clock()
    policy = BatchPolicy(max_batch_size=64, max_latency_s=0.010, clock=clock)
    for _ in range(5):
        policy.arrived()
        clock.now += 1.0  # one request a second
    assert policy.should_dispatch(1, clock.now)
    assert not policy.should_dispatch(0, clock.now)


def test_a_full_batch_lifts_the_limit_until_the_queue_is_drained() -> None:
    policy = BatchPolicy(max_batch_size=64, max_latency_s=0.010, clock=Clock())
    policy.observed(1, 0.001)
    policy.observed(8, 0.0045)  # 0.5 ms per item: 10 fit in the budget
    assert policy.batch_limit == 10
    policy.observed(10, 0.0055)  # full: requests are waiting, take up to the maximum
    assert policy.batch_limit == 64
    policy.observed(30, 0.0155)  # not full any more: back to the budget
    assert policy.batch_limit == 10
