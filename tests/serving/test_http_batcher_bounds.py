"""The HTTP batcher's bounds, on its own (pure logic: a scoring function stands in for the
model): a full queue refuses at once, and requests sharing an id never get each other's answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

import pytest

from headwater.schemas.models import Prediction
from headwater.serving.batching import BatchPolicy
from headwater.serving.errors import QueueFull
from headwater.serving.http_batcher import AsyncBatcher
from headwater.serving.scorer import Rejected, Scored, ScoreRequest


def _prediction(request: ScoreRequest) -> Prediction:
    return Prediction(
        request_id=request.request_id, entity_id=request.entity_id, model="m", version=1,
        route="champion", output=float(request.features["x"]), features=dict(request.features),
        event_time_ms=0, served_at_ms=0, latency_ms=0.0,
    )  # fmt: skip


def _request(request_id: str, x: float) -> ScoreRequest:
    return ScoreRequest(request_id, f"e-{x}", {"x": x}, event_time_ms=0, received_at=0.0)


def test_a_full_queue_refuses_the_next_request_at_once() -> None:
    release, scoring = threading.Event(), threading.Event()

    def hanging(requests: Sequence[ScoreRequest]) -> Scored:
        scoring.set()
        release.wait(60)
        return Scored([_prediction(r) for r in requests], [])

    async def until(condition: Callable[[], bool]) -> None:
        for _ in range(3000):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the batcher never got there")

    async def scenario() -> list[Prediction | Rejected]:
        policy = BatchPolicy(max_batch_size=1, max_latency_s=0.001)
        batcher = AsyncBatcher(hanging, policy=policy, max_in_flight=1, max_queue=2)
        batcher.start()
        try:
            waiting = [asyncio.create_task(batcher.submit(_request("r0", 0)))]
            await until(scoring.is_set)  # the one batch allowed in flight hangs
            waiting += [asyncio.create_task(batcher.submit(_request(f"r{i}", i))) for i in (1, 2)]
            await until(lambda: len(batcher._queue) == 2)
            with pytest.raises(QueueFull, match="HEADWATER_SERVING_HTTP_QUEUE_MAX"):
                await batcher.submit(_request("one-too-many", 9))
        finally:
            release.set()
        answers = await asyncio.gather(*waiting)
        await batcher.stop()
        return list(answers)

    answers = asyncio.run(scenario())
    assert [a.output for a in answers if isinstance(a, Prediction)] == [0, 1, 2]


def test_requests_sharing_an_id_never_get_each_others_answer() -> None:
    def score(requests: Sequence[ScoreRequest]) -> Scored:
        return Scored([_prediction(r) for r in requests], [])

    async def scenario() -> list[Prediction | Rejected]:
        policy = BatchPolicy(max_batch_size=8, max_latency_s=0.05)
        batcher = AsyncBatcher(score, policy=policy)
        batcher.start()
        same = [batcher.submit(_request("same", x)) for x in (1.0, 2.0)]
        answers = await asyncio.gather(*same, batcher.submit(_request("own", 3.0)))
        await batcher.stop()
        return list(answers)

    first, second, own = asyncio.run(scenario())
    assert isinstance(own, Prediction) and own.output == 3.0
    for answer, sent in ((first, 1.0), (second, 2.0)):  # refused, or its own answer
        if isinstance(answer, Prediction):
            assert answer.output == sent
        else:
            assert "not unique" in answer.reason
