"""Retrain requests, one retrain per model at a time, later requests coalesced — no Kafka here.

:class:`RetrainQueue` is told each request (with where it came from) and each finished retrain;
it says which retrain to start next and up to which offset each partition may be committed
(never past a request whose retrain has not finished).

>>> from headwater.schemas.models import RetrainRequest
>>> def request(n, model="m"):
...     return RetrainRequest(request_id=f"r{n}", model=model, reason=f"drift {n}",
...                           requested_at_ms=n)
>>> queue = RetrainQueue()
>>> queue.submit(request(1), 0, 10).request_ids
['r1']
>>> queue.submit(request(2), 0, 11) is None, queue.submit(request(3), 0, 12) is None
(True, True)
>>> queue.committable()  # nothing finished: a restart reads from r1 again
{0: 10}
>>> queue.finish("m").request_ids
['r2', 'r3']
>>> queue.committable()
{0: 11}
>>> queue.finish("m") is None, queue.committable()
(True, {0: 13})
"""

from __future__ import annotations

from dataclasses import dataclass, field

from headwater.schemas.models import RetrainRequest


@dataclass
class Retrain:
    """One retrain covering one or more coalesced requests."""

    model: str
    request_ids: list[str]
    reasons: list[str]
    alarm_ids: list[str]
    trials: int
    sources: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset)
    since_ms: int = 0  # train on rows from the latest detected change on (0: all rows)

    @classmethod
    def of(cls, request: RetrainRequest, partition: int, offset: int) -> Retrain:
        return cls(
            request.model,
            [request.request_id],
            [request.reason],
            list(request.alarm_ids),
            request.trials,
            [(partition, offset)],
            request.since_ms,
        )

    def absorb(self, request: RetrainRequest, partition: int, offset: int) -> None:
        self.request_ids.append(request.request_id)
        if request.reason not in self.reasons:
            self.reasons.append(request.reason)
        self.alarm_ids += [a for a in request.alarm_ids if a not in self.alarm_ids]
        self.trials = max(self.trials, request.trials)
        self.since_ms = max(self.since_ms, request.since_ms)  # the world as it is now
        self.sources.append((partition, offset))

    @property
    def reason(self) -> str:
        return f"retrain for {', '.join(self.request_ids)}: {'; '.join(self.reasons)}"


class RetrainQueue:
    """At most one running retrain per model; requests meanwhile wait, merged into one."""

    def __init__(self) -> None:
        self.running: dict[str, Retrain] = {}
        self.waiting: dict[str, Retrain] = {}
        self.coalesced = 0
        self._open: dict[int, set[int]] = {}  # offsets not finished, per partition
        self._next: dict[int, int] = {}  # one past the highest offset seen

    def submit(self, request: RetrainRequest, partition: int, offset: int) -> Retrain | None:
        """Queue a request; returns the retrain to start now, if any."""
        self._open.setdefault(partition, set()).add(offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)
        model = request.model
        if model not in self.running:
            self.running[model] = Retrain.of(request, partition, offset)
            return self.running[model]
        if model in self.waiting:
            self.waiting[model].absorb(request, partition, offset)
            self.coalesced += 1
        else:
            self.waiting[model] = Retrain.of(request, partition, offset)
        return None

    def skip(self, partition: int, offset: int) -> None:
        """A record that is no request (it went to ``deadletter``): done as soon as seen."""
        self._open.setdefault(partition, set())
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def finish(self, model: str) -> Retrain | None:
        """Mark ``model``'s running retrain done; returns the next one to start, if any."""
        done = self.running.pop(model)
        for partition, offset in done.sources:
            self._open[partition].discard(offset)
        following = self.waiting.pop(model, None)
        if following is not None:
            self.running[model] = following
        return following

    def committable(self) -> dict[int, int]:
        """Per partition, the offset to commit (the next record to read after a restart)."""
        return {p: min(o) if o else self._next[p] for p, o in self._open.items()}
