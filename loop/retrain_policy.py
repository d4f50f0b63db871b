"""When to ask for a retrain: sustained drift or a quality drop, debounced, cooled down and capped.

One alarm is not enough: a request goes out when at least ``min_alarms`` distinct alarms of a
model (critical ones count double) arrived within ``sustain_ms``. After a request the policy is
quiet for ``cooldown_ms`` (the retrain and canary need that time), and it never sends more than
``max_requests`` within ``cap_period_ms``. A flapping detector therefore produces at most
``max_requests`` requests per ``cap_period_ms`` whatever its rate. Time is the alarms' own
``detected_at_ms``, so replaying the ``drift`` topic gives the same decisions.

The policy keeps trying until quality recovers. Once it asked (or wanted to ask during a
cooldown) the model counts as *degraded* until a new version is promoted. A degraded model is
asked for again whenever the cooldown has passed and nothing is being tried (:meth:`tick`, with
``busy`` while a canary runs): detectors adapt to a constant, high error and may never alarm
again, so silence is no recovery. A rollback ends the cooldown (the retrain failed: try again
now); a promotion ends the degraded state and the cooldown, so alarms about the new champion
count afresh. Every request counts towards the cap; when a request is due and the cap is
reached, :meth:`tick` returns a ``retrain_cap`` alarm once (the model the loop cannot fix),
until the next promotion.

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
>>> policy.tick(300_000, busy=False) is None  # still cooling down
True
>>> policy.tick(601_000, busy=False).reason  # degraded, nothing promoted: ask again
'still degraded 600 s after the last request (1 alarms since)'
>>> policy.on_version("promoted", 700_000)
>>> policy.tick(2_000_000, busy=False) is None  # recovered
True
"""

from __future__ import annotations

from collections import deque

from headwater.schemas.models import RETRAIN_CAP, DriftAlarm, RetrainRequest

CAP_STATISTIC = RETRAIN_CAP
MAX_UNANSWERED = 100


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
        self.degraded = False  # asked (or wanted to) and no new version promoted since
        self.capped = False  # a request was due past the cap; cleared by a promotion
        self._since = 0  # the latest change point of the degraded episode
        # alarms since the last request, by id (the latest ones: a flapping detector is bounded)
        self._unanswered: dict[str, DriftAlarm] = {}
        self._cooldown_over = False

    def observe(self, alarm: DriftAlarm) -> RetrainRequest | None:
        """Take one alarm; returns a retrain request when the policy fires."""
        if alarm.model != self.model or alarm.kind not in self.kinds:
            return None  # skew is a bug to fix, not a reason to retrain
        if alarm.statistic == CAP_STATISTIC:
            return None  # the policy's own alarm
        if alarm.alarm_id in self._seen:
            return None  # a replayed or duplicated alarm counts once
        self._seen.add(alarm.alarm_id)
        now = alarm.detected_at_ms
        self._recent.append(alarm)
        if self.degraded:
            self._note_unanswered([alarm])
        while self._recent and self._recent[0].detected_at_ms < now - self.sustain_ms:
            self._recent.popleft()
        weight = sum(2 if a.severity == "critical" else 1 for a in self._recent)
        if weight < self.min_alarms:
            return None
        if not self._allowed(now):
            self.suppressed += 1
            self._mark_degraded(list(self._recent))
            return None
        return self._request(now)

    def tick(self, now_ms: int, busy: bool) -> RetrainRequest | DriftAlarm | None:
        """Time passes: a degraded model gets another request once the cooldown is over and
        nothing is being tried (``busy``: a canary runs); past the cap, one alarm instead."""
        if not self.degraded or busy:
            return None
        if not self._allowed(now_ms):
            if self.capped or not self._cap_reached(now_ms) or not self._cooled(now_ms):
                return None
            self.capped = True
            return self._cap_alarm(now_ms)
        alarms = list(self._unanswered.values())
        return self._request(
            now_ms,
            alarms,
            f"still degraded {(now_ms - self._last_request()) // 1000} s after the last request "
            f"({len(alarms)} alarms since)",
        )

    def on_version(self, action: str, now_ms: int) -> None:
        """A promotion or rollback of this model: the cooldown is over (the retrain and its
        canary are done); a promotion also ends the degraded state."""
        if action not in ("promoted", "rolled_back"):
            return
        self._cooldown_over = True
        if action == "promoted":
            self.degraded = self.capped = False
            self._since = 0
            self._unanswered.clear()
            self._recent.clear()

    def _mark_degraded(self, alarms: list[DriftAlarm]) -> None:
        self.degraded = True
        self._since = max(self._since, _change_point(alarms))
        self._note_unanswered(alarms)

    def _note_unanswered(self, alarms: list[DriftAlarm]) -> None:
        for alarm in alarms:
            self._unanswered[alarm.alarm_id] = alarm
        while len(self._unanswered) > MAX_UNANSWERED:
            del self._unanswered[next(iter(self._unanswered))]

    def _last_request(self) -> int:
        return self._requests[-1] if self._requests else 0

    def _cooled(self, now: int) -> bool:
        if self._cooldown_over or not self._requests:
            return True
        return now - self._requests[-1] >= self.cooldown_ms

    def _cap_reached(self, now: int) -> bool:
        while self._requests and self._requests[0] < now - self.cap_period_ms:
            self._requests.popleft()
        return len(self._requests) >= self.max_requests

    def _cap_alarm(self, now: int) -> DriftAlarm:
        return DriftAlarm(
            alarm_id=f"{CAP_STATISTIC}:{self.model}:{now}",
            model=self.model,
            kind="quality",
            statistic=CAP_STATISTIC,
            value=float(len(self._requests)),
            threshold=float(self.max_requests),
            window_size=len(self._requests),
            window_start_ms=self._requests[0] if self._requests else now,
            window_end_ms=now,
            severity="critical",
            detected_at_ms=now,
        )

    def _allowed(self, now: int) -> bool:
        return self._cooled(now) and not self._cap_reached(now)

    def _request(
        self, now: int, alarms: list[DriftAlarm] | None = None, reason: str = ""
    ) -> RetrainRequest:
        if alarms is None:
            alarms = list(self._recent)
            causes = sorted({f"{a.kind}/{a.feature or '-'}/{a.statistic}" for a in alarms})
            label = "quality drop" if all(a.kind != "data" for a in alarms) else "sustained drift"
            reason = (
                f"{label}: {len(alarms)} alarms in {self.sustain_ms // 1000} s "
                f"({', '.join(causes[:5])})"
            )
        self._recent.clear()
        self._requests.append(now)
        self._cooldown_over = False
        self._mark_degraded(alarms)
        self._unanswered.clear()
        return RetrainRequest(
            request_id=f"retrain:{self.model}:{now}",
            model=self.model,
            reason=reason,
            alarm_ids=[a.alarm_id for a in alarms],
            requested_at_ms=now,
            trials=self.trials,
            since_ms=self._since,
        )


def _change_point(alarms: list[DriftAlarm]) -> int:
    """The latest change point of concept alarms (event time); 0 when there is none."""
    return max((a.window_start_ms for a in alarms if a.kind == "concept"), default=0)
