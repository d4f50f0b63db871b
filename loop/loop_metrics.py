"""The loop process's live gauges, read from its detectors at scrape time: every drift test of
each watched model version's latest window, passed or not (alarms only say when one failed).

>>> from headwater.infra.metrics import PlatformMetrics
>>> from headwater.schemas.models import Prediction
>>> from headwater.loop.drift_monitor import FeatureReference
>>> handler = LoopHandler(lambda m, v, sha: {"x": FeatureReference.from_sample("x", range(100))})
>>> for t in range(500):
...     served = Prediction(request_id=f"r{t}", entity_id="c", model="fraud", version=1,
...         route="champion", output=0.5, features={"x": t % 100}, event_time_ms=t,
...         served_at_ms=t, latency_ms=1.0)
...     _ = handler.handle("predictions", served)
>>> metrics = PlatformMetrics()
>>> drift_gauges(metrics, handler)()
>>> metrics.value("headwater_drift_statistic", model="fraud", feature="x", statistic="psi")
0.0
>>> metrics.value("headwater_drift_threshold", model="fraud", feature="x", statistic="psi") > 0
True
"""

from __future__ import annotations

from collections.abc import Callable

from headwater.infra.metrics import PlatformMetrics
from headwater.loop.loop_handler import LoopHandler


def drift_gauges(metrics: PlatformMetrics, loop: LoopHandler) -> Callable[[], None]:
    """A refresher (:meth:`~headwater.infra.metrics.PlatformMetrics.before_scrape`) setting the
    drift
    statistic and threshold gauges from ``loop``'s monitors."""

    def refresh() -> None:
        for monitor in loop.drift_monitors():
            for test in monitor.last_window:
                labels = {
                    "model": monitor.model,
                    "feature": test.feature,
                    "statistic": test.statistic,
                }
                metrics.drift_statistic.labels(**labels).set(test.value)
                metrics.drift_threshold.labels(**labels).set(test.threshold)

    return refresh
