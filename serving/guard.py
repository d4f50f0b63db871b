"""One model version behind its guards: bulkhead, circuit breaker and per-call timeout.

Calls run on the version's own small thread pool, sized like its bulkhead, so a call that hangs
holds one of that version's threads and nothing else; the caller stops waiting after
``timeout_s`` and gets a :class:`ScoringTimeout`.

A predictor that cannot block (pure arithmetic on arrays, no lock, no I/O: the family's MLP in
numpy) runs on the caller's thread instead, as Hystrix's semaphore isolation runs high-volume
calls that make no network call: the bulkhead and the breaker still apply, and an answer that
comes after ``timeout_s`` is refused as a timeout (the breaker counts it, the fallback chain
answers). A thread handoff costs two wake-ups, about 90 µs on an idle 2-core machine and more
on a busy one, which was as much as the model's own forward pass for a stream's small batches.

>>> import numpy as np
>>> guard = VersionGuard("fraud", 3, GuardPolicy(timeout_s=1.0))
>>> guard.call(lambda x: x * 2, np.ones(2)).tolist()
[2.0, 2.0]
>>> guard.call(lambda x: x + 1, np.ones(2), on_caller=True).tolist()
[2.0, 2.0]
>>> guard.close()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np

from headwater.serving.breaker import CircuitBreaker
from headwater.serving.bulkhead import Bulkhead
from headwater.serving.errors import BulkheadFull, CircuitOpen, ModelRaised, ScoringTimeout

Array = np.ndarray
PredictFn = Callable[[Array], Array]


@dataclass(frozen=True)
class GuardPolicy:
    """The fault-tolerance settings of every version (Hystrix's defaults)."""

    timeout_s: float = 1.0
    max_concurrency: int = 4
    error_threshold: float = 0.5
    volume_threshold: int = 20
    window_s: float = 10.0
    sleep_window_s: float = 5.0
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    def breaker(self) -> CircuitBreaker:
        return CircuitBreaker(
            error_threshold=self.error_threshold,
            volume_threshold=self.volume_threshold,
            window_s=self.window_s,
            sleep_window_s=self.sleep_window_s,
            clock=self.clock,
        )


class VersionGuard:
    """Runs one version's calls with its bulkhead, breaker and timeout."""

    def __init__(self, model: str, version: int, policy: GuardPolicy) -> None:
        self.model = model
        self.version = version
        self.policy = policy
        self.breaker = policy.breaker()
        self.bulkhead = Bulkhead(policy.max_concurrency)
        self._pool = ThreadPoolExecutor(
            max_workers=policy.max_concurrency, thread_name_prefix=f"score-{model}-v{version}"
        )

    @property
    def name(self) -> str:
        return f"{self.model} v{self.version}"

    def call(self, predict: PredictFn, features: Array, *, on_caller: bool = False) -> Array:
        """``predict(features)`` under the guards, or a :class:`ScoringFailed` saying why not;
        on the caller's thread with ``on_caller`` (only for a ``predict`` that cannot block:
        its timeout is checked when it returns)."""
        if not self.bulkhead.try_acquire():
            raise BulkheadFull(f"{self.name}: all {self.bulkhead.limit} concurrent slots taken")
        if not self.breaker.allow():
            self.bulkhead.release()
            raise CircuitOpen(f"{self.name}: circuit breaker open")
        if on_caller:
            return self._on_caller(predict, features)
        try:
            future = self._pool.submit(predict, features)
        except RuntimeError:
            self.bulkhead.release()  # the pool was closed while this call was on its way
            raise CircuitOpen(f"{self.name}: version unloaded") from None
        future.add_done_callback(self._release)
        return self._await(future)

    def _on_caller(self, predict: PredictFn, features: Array) -> Array:
        started = time.perf_counter()
        try:
            outputs = predict(features)
        except Exception as error:
            raise self._raised(error) from error
        finally:
            self.bulkhead.release()
        took = time.perf_counter() - started
        if took > self.policy.timeout_s:
            self.breaker.record(False)
            raise ScoringTimeout(
                f"{self.name}: answered after {took:.3g} s, past its {self.policy.timeout_s:g} s"
                " timeout"
            )
        self.breaker.record(True)
        return outputs

    def _await(self, future: Future[Array]) -> Array:
        try:
            outputs = future.result(timeout=self.policy.timeout_s)
        except FutureTimeout:
            self.breaker.record(False)
            raise ScoringTimeout(
                f"{self.name}: no answer within {self.policy.timeout_s:g} s"
            ) from None
        except Exception as error:
            raise self._raised(error) from error
        self.breaker.record(True)
        return outputs

    def _raised(self, error: Exception) -> ModelRaised:
        """A call that raised: counted by the breaker, named."""
        self.breaker.record(False)
        return ModelRaised(f"{self.name} raised {type(error).__name__}: {error}")

    def _release(self, _: Future[Array]) -> None:
        self.bulkhead.release()

    def close(self) -> None:
        """Stop taking calls; a hung call's thread is left to finish on its own."""
        self._pool.shutdown(wait=False, cancel_futures=True)
