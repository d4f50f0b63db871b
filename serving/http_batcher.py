"""Micro-batching concurrent HTTP requests into one model call.

Request handlers :meth:`AsyncBatcher.submit` a :class:`~headwater.serving.scorer.ScoreRequest` and
await
its answer. One loop gathers queued requests while the adaptive
:class:`~headwater.serving.batching.BatchPolicy` says to wait, then scores the whole batch on a
worker
thread (the event loop never runs a model), resolves every caller's future, and only then runs
``after`` (logging predictions, scoring shadows) so that work never delays an answer. Up to
``max_in_flight`` batches score at once, so one batch stuck on a hanging model (until its
timeout) does not hold up the next. At most ``max_queue`` requests wait: one more is refused at
once with :class:`~headwater.serving.errors.QueueFull` rather than queued without end.

Answers are matched to requests by request id, so ids must be unique within a batch; requests
that share one are each refused rather than handed someone else's answer (the HTTP app gives
every request an id of its own).

>>> import asyncio
>>> from headwater.serving.scorer import Scored
>>> def echo(requests):
...     return Scored([], [])
>>> async def demo():
...     batcher = AsyncBatcher(echo)
...     batcher.start()
...     r = ScoreRequest("r1", "e1", {}, event_time_ms=0, received_at=0.0)
...     result = await batcher.submit(r)
...     await batcher.stop()
...     return result
>>> asyncio.run(demo())
Rejected(request=ScoreRequest(request_id='r1', ...), reason='no answer for request r1')
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from headwater.schemas.models import Prediction
from headwater.serving.batching import BatchPolicy
from headwater.serving.errors import QueueFull
from headwater.serving.scorer import Rejected, Scored, ScoreRequest

Answer = Prediction | Rejected
AfterBatch = Callable[[Sequence[ScoreRequest], Scored], None]


class AsyncBatcher:
    """Batches submitted requests for ``score``; ``after`` runs once answers are out."""

    def __init__(
        self,
        score: Callable[[Sequence[ScoreRequest]], Scored],
        *,
        policy: BatchPolicy | None = None,
        after: AfterBatch | None = None,
        max_in_flight: int = 4,
        max_queue: int = 1024,
    ) -> None:
        self.score = score
        self.policy = policy or BatchPolicy()
        self.after = after
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._queue: list[tuple[ScoreRequest, asyncio.Future[Answer]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.max_in_flight)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        for _, future in self._queue:
            if not future.done():
                future.cancel()

    async def submit(self, request: ScoreRequest) -> Answer:
        if self._wake is None:
            raise RuntimeError("AsyncBatcher.submit before start()")
        if len(self._queue) >= self.max_queue:
            raise QueueFull(
                f"{len(self._queue)} requests already wait for scoring "
                "(HEADWATER_SERVING_HTTP_QUEUE_MAX); retry shortly"
            )
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        self.policy.arrived()
        self._wake.set()
        return await future

    async def _run(self) -> None:
        assert self._wake is not None and self._slots is not None
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            oldest_at = self._queue[0][0].received_at
            while not self.policy.should_dispatch(len(self._queue), oldest_at):
                self._wake.clear()
                try:
                    await asyncio.wait_for(
                        self._wake.wait(), self.policy.wait_s(oldest_at, len(self._queue))
                    )
                except TimeoutError:
                    break
            await self._slots.acquire()  # at most max_in_flight batches scoring at once
            limit = self.policy.batch_limit
            batch, self._queue = self._queue[:limit], self._queue[limit:]
            task = asyncio.get_running_loop().create_task(self._dispatch(batch))
            self._running.add(task)  # keep a reference until it is done
            task.add_done_callback(self._running.discard)

    async def _dispatch(self, batch: list[tuple[ScoreRequest, asyncio.Future[Answer]]]) -> None:
        assert self._slots is not None
        try:
            await self._score_batch(batch)
        finally:
            self._slots.release()

    async def _score_batch(self, batch: list[tuple[ScoreRequest, asyncio.Future[Answer]]]) -> None:
        requests = [request for request, _ in batch]
        started = time.monotonic()
        try:
            scored = await asyncio.to_thread(self.score, requests)
        except Exception as error:  # a bug must fail these requests, not the batching loop
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self.policy.observed(len(requests), time.monotonic() - started)
        answers: dict[str, Answer] = {p.request_id: p for p in scored.predictions}
        answers.update({r.request.request_id: r for r in scored.rejected})
        shared = _shared_ids(requests)
        for request, future in batch:
            if future.done():
                continue
            rid = request.request_id
            if rid in shared:
                future.set_result(Rejected(request, f"request id {rid} is not unique in its batch"))
            else:
                future.set_result(
                    answers.get(rid) or Rejected(request, f"no answer for request {rid}")
                )
        if self.after is not None:
            await asyncio.to_thread(self.after, requests, scored)


def _shared_ids(requests: Sequence[ScoreRequest]) -> set[str]:
    seen: set[str] = set()
    shared: set[str] = set()
    for request in requests:
        (shared if request.request_id in seen else seen).add(request.request_id)
    return shared
