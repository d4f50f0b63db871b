"""The online baseline of ``bench.bench_loop``: river's ARF learning prequentially on the
demo's stream (predict on arrival, learn when the label arrives)."""

from __future__ import annotations

from bench.loop_production import arf_prequential
from headwater.demo.generator import DemoConfig


def test_arf_scores_every_labelled_event_once_in_its_phase() -> None:
    config = DemoConfig(seed=3, cards=40, fraud_rate=0.05, shift_at=900, drift_at=900)
    quality = arf_prequential(config, 1_500, start_at=300, drift_at=900, decision_at=1_200)
    counts = {phase: int(q["count"]) for phase, q in quality.items()}
    # every event from the 300th is predicted once; those whose labels fell due within the
    # stream (all but the last label delay's worth) are scored in the phase of their index
    assert counts["before_drift"] == 600 and counts["after_drift"] == 300
    assert 0 < counts["after_decision"] <= 300
    assert quality["before_drift"]["accuracy"] > 0.5
