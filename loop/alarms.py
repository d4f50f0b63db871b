"""A window's failed test as a :class:`~headwater.schemas.models.DriftAlarm`: the one way the window
detectors (data drift, training–serving skew) name, grade and time their alarms.

>>> test = WindowTest("amount", "psi", value=0.5, threshold=0.2, size=500, start_ms=0, end_ms=9)
>>> alarm = test.alarm("fraud", 1, "data")
>>> alarm.alarm_id, alarm.severity, alarm.detected_at_ms
('data:fraud@1/amount/psi/9', 'critical', 9)
>>> test.alarm("fraud", 1, "skew", severity="warning").alarm_id
'skew:fraud@1/amount/psi/9'
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from headwater.schemas.models import DriftAlarm

# A value this many times its threshold makes an alarm critical rather than a warning.
CRITICAL_FACTOR = 2.0

Severity = Literal["warning", "critical"]


class WindowTest(NamedTuple):
    """One statistic of one feature over one window of ``size`` values, and its threshold.

    A named tuple: every window makes one per feature and statistic, and a tuple is made in C.
    """

    feature: str
    statistic: str
    value: float
    threshold: float
    size: int
    start_ms: int
    end_ms: int

    def alarm(
        self,
        model: str,
        version: int,
        kind: Literal["data", "skew"],
        severity: Severity | None = None,
    ) -> DriftAlarm:
        """The alarm of this test of ``model@version``, detected when the window closed; graded
        by how far the value passed its threshold unless ``severity`` is given."""
        if severity is None:
            severity = "critical" if self.value >= CRITICAL_FACTOR * self.threshold else "warning"
        return DriftAlarm(
            alarm_id=f"{kind}:{model}@{version}/{self.feature}/{self.statistic}/{self.end_ms}",
            model=model,
            version=version,
            feature=self.feature,
            kind=kind,
            statistic=self.statistic,
            value=self.value,
            threshold=self.threshold,
            window_size=self.size,
            window_start_ms=self.start_ms,
            window_end_ms=self.end_ms,
            severity=severity,
            detected_at_ms=self.end_ms,
        )
