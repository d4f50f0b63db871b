"""When to ask for a retrain: sustained drift or a quality drop, debounced, cooled down and capped.

One alarm is not enough: a request goes out when at least ``min_alarms`` distinct alarms of a
model (critical ones count double) arrived within ``sustain_ms``. After a request the policy is
quiet for ``cooldown_ms`` (the retrain and canary need that time), and it never sends more than
``max_requests`` within ``cap_period_ms``. A flapping detector therefore produces at most
``max_requests`` requests per ``cap_period_ms`` whatever its rate. Time is the alarms' own
``detected_at_ms``, so replaying the ``drift`` topic gives the same decisions.

A request carries ``since_ms``, the latest change point of its ``concept`` alarms (their
``window_start_ms``, in event time): the retrain trains on the world after the change. Data
drift alarms carry windows on the loop's clock, not event time; a request of data alarms only
has ``since_ms`` 0 (all rows).

>>> from headwater.schemas.models import DriftAlarm
>>> def alarm(i: int, t: int) -> DriftAlarm:
...     return DriftAlarm(alarm_id=f"a{i}", model="fraud", feature="amount", kind="data",
...         statistic="psi", value=1.0, threshold=0.1, window_size=500, window_start_ms=t,
...         window_end_ms=t, severity="warning", detected_at_ms=t)
>>> policy = RetrainPolicy("fraud", min_alarms=2, sustain_ms=60_000, cooldown_ms=600_000)
>>> policy.observe(alarm(1, 0)) is None
True
>>> request = policy.observe(alarm(2, 1_000))
>>> request.alarm_ids, request.reason
(['a1', 'a2'], 'sustained drift: 2 alarms in 60 s (data/amount/psi)')
>>> policy.observe(alarm(3, 2_000)) is None  # cooling down
True
"""

from __future__ import annotations

from collections import deque

from headwater.schemas.models import DriftAlarm, RetrainRequest


class RetrainPolicy:
    """Turns a model's drift and quality alarms into rare, well-founded retrain requests."""

    def __init__(
        self,
        model: str,
        min_alarms: int = 3,
        sustain_ms: int = 300_000,
        cooldown_ms: int = 3_600_000,
        max_requests: int = 3,
        cap_period_ms: int = 86_400_000,
        trials: int = 8,
        kinds: frozenset[str] = frozenset({"data", "concept", "quality"}),
    ) -> None:
        self.model = model
        self.min_alarms = min_alarms
        self.sustain_ms = sustain_ms
        self.cooldown_ms = cooldown_ms
        self.max_requests = max_requests
        self.cap_period_ms = cap_period_ms
        self.trials = trials
        self.kinds = kinds
        self._recent: deque[DriftAlarm] = deque()
        self._seen: set[str] = set()
        self._requests: deque[int] = deque()
        self.suppressed = 0

    def observe(self, alarm: DriftAlarm) -> RetrainRequest | None:
        """Take one alarm; returns a retrain request when the policy fires."""
        if alarm.model != self.model or alarm.kind not in self.kinds:
            return None  # skew is a bug to fix, not a reason to retrain
        if alarm.alarm_id in self._seen:
            return None  # a replayed or duplicated alarm counts once
        self._seen.add(alarm.alarm_id)
        now = alarm.detected_at_ms
        self._recent.append(alarm)
        while self._recent and self._recent[0].detected_at_ms < now - self.sustain_ms:
            self._recent.popleft()
        weight = sum(2 if a.severity == "critical" else 1 for a in self._recent)
        if weight < self.min_alarms:
            return None
        if not self._allowed(now):
            self.suppressed += 1
            return None
        return self._request(now)

    def _allowed(self, now: int) -> bool:
        while self._requests and self._requests[0] < now - self.cap_period_ms:
            self._requests.popleft()
        if self._requests and now - self._requests[-1] < self.cooldown_ms:
            return False
        return len(self._requests) < self.max_requests

    def _request(self, now: int) -> RetrainRequest:
        alarms = list(self._recent)
        self._recent.clear()
        self._requests.append(now)
        causes = sorted({f"{a.kind}/{a.feature or '-'}/{a.statistic}" for a in alarms})
        label = "quality drop" if all(a.kind != "data" for a in alarms) else "sustained drift"
        return RetrainRequest(
            request_id=f"retrain:{self.model}:{now}",
            model=self.model,
            reason=(
                f"{label}: {len(alarms)} alarms in {self.sustain_ms // 1000} s "
                f"({', '.join(causes[:5])})"
            ),
            alarm_ids=[a.alarm_id for a in alarms],
            requested_at_ms=now,
            trials=self.trials,
            since_ms=max((a.window_start_ms for a in alarms if a.kind == "concept"), default=0),
        )
