"""``python -m headwater.loop``: the loop's agents as one process — the loop handler (label join,
live metrics, drift and error detectors, retraining policy, canary controller) and the skew
handler — on the topics of the configured prefix, until SIGTERM or SIGINT.

A process supervisor (or ``headwater up``'s stream processes) runs it next to the feature
worker, the sink, the scorer and the retrain worker.
"""

from __future__ import annotations

import signal
import sys
import threading

from headwater.core.errors import HeadwaterError
from headwater.core.logs import configure_logging
from headwater.core.settings import load_settings
from headwater.infra.metrics import METRICS, serve_process_metrics
from headwater.loop.agent_runner import AgentRunner
from headwater.loop.loop_handler import LoopConfig, LoopHandler
from headwater.loop.loop_metrics import drift_gauges
from headwater.loop.references import BundleReferences
from headwater.loop.skew_handler import SkewHandler
from headwater.streams.feature_module import load_feature_module
from headwater.trainers.artifacts import ArtifactStore


def main() -> int:
    configure_logging("loop")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        settings = load_settings()
        serve_process_metrics(settings, "loop")
        feature_set = load_feature_module(settings.features).feature_set
        loop = LoopHandler(
            BundleReferences(ArtifactStore.from_settings(settings)),
            LoopConfig.from_settings(settings),
        )
        METRICS.before_scrape(drift_gauges(METRICS, loop))
        prefix = settings.topic_prefix
        runners = [
            AgentRunner(
                settings, loop, f"{prefix}headwater-loop", observe_inputs=("predictions",)
            ).start(),
            AgentRunner(settings, SkewHandler(feature_set), f"{prefix}headwater-skew").start(),
        ]
    except HeadwaterError as error:
        print(f"headwater.loop: {error}", file=sys.stderr)
        return 1
    while not stop.wait(1.0):
        failed = [r for r in runners if r.error is not None]
        if failed:
            stop.set()
    code = 0
    for runner in runners:
        try:
            runner.stop()
        except HeadwaterError as error:
            print(f"headwater.loop: {error}", file=sys.stderr)
            code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
