"""The loop on the production path, against an online adaptive learner on the same stream.

:func:`production_loop` runs ``headwater demo``'s stream through exactly the processes
``headwater up`` starts (feature worker, sink, scorers, loop agents, retrain worker and its trial
workers) and reads what they did from the topics: the detection delay in events, the seconds
from detection to the canary's decision, and the accuracy of the predictions that answered,
before and after the change. :func:`arf_prequential` runs river's ``forest.ARFClassifier`` on
the same transactions with the same features, predicting each one as it arrives and learning
from its label when the label arrives (the same delay the served model sees).
The bar: a batch-retrained model behind a canary recovers as well as an online learner.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river import forest

from headwater.core.settings import HeadwaterSettings
from headwater.demo.fraud_features import FEATURE_SET
from headwater.demo.generator import DemoConfig, DemoStream
from headwater.demo.observer import event_index
from headwater.demo.run import DemoOptions, DemoRun
from headwater.infra.warehouse_host import host_file, running_host_pid
from headwater.loop.quality import classification_metrics
from headwater.operate.platform import stop_pid
from headwater.schemas.models import Label, Transaction

PHASES = ("before_drift", "after_drift", "after_decision")


@dataclass
class _Phases:
    """(label, output) pairs per phase of the stream."""

    pairs: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {p: [] for p in PHASES}
    )

    def quality(self) -> dict[str, dict[str, float]]:
        result: dict[str, dict[str, float]] = {}
        for phase, pairs in self.pairs.items():
            if not pairs:
                result[phase] = {"count": 0.0}
                continue
            y, p = np.asarray(pairs).T
            result[phase] = {"count": float(len(pairs)), **classification_metrics(y, p)}
        return result


def arf_prequential(
    config: DemoConfig,
    events: int,
    *,
    start_at: int,
    drift_at: int,
    decision_at: int | None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """river's ARF on the demo's transactions: predicted on arrival, learnt when labelled;
    quality per phase of the events from ``start_at`` (the served model's first event)."""
    model = forest.ARFClassifier(seed=seed)
    states: dict[str, Any] = {}
    # event id -> its features, its index and what the learner said on its arrival
    waiting: dict[str, tuple[dict[str, float], int, float | None]] = {}
    phases = _Phases()
    for record in DemoStream(config).records(events):
        if isinstance(record, Transaction):
            state = states.setdefault(record.card_id, FEATURE_SET.new_state())
            index = event_index(record.event_id)
            values = state.update(
                record.event_time_ms, record.numeric(), record.categorical(), index
            )
            x = dict(values or {})
            output = model.predict_proba_one(x).get(True, 0.0) if index >= start_at else None
            waiting[record.event_id] = (x, index, output)
        elif isinstance(record, Label) and record.event_id in waiting:
            x, index, output = waiting.pop(record.event_id)
            if output is not None:
                phases.pairs[_phase(index, drift_at, decision_at)].append((record.label, output))
            model.learn_one(x, record.label > 0.5)
    return phases.quality()


def _phase(index: int, drift_at: int, decision_at: int | None) -> str:
    if decision_at is not None and index >= decision_at:
        return "after_decision"
    return "after_drift" if index >= drift_at else "before_drift"


def _stop_warehouse_host(settings: HeadwaterSettings) -> None:
    pid = running_host_pid(settings)  # the demo leaves its dashboard serving; a bench does not
    if pid is not None:
        stop_pid(pid)
        host_file(settings).unlink(missing_ok=True)


def _after_change(quality: Mapping[str, Mapping[str, float]], metric: str) -> float | None:
    """``metric`` over every phase after the change (an accuracy is a mean: count-weighted)."""
    parts = [quality[p] for p in ("after_drift", "after_decision") if quality[p].get("count")]
    total = sum(q["count"] for q in parts)
    if not total or any(metric not in q for q in parts):
        return None
    return sum(q[metric] * q["count"] for q in parts) / total


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def production_loop(
    settings: HeadwaterSettings, events: int, rate: float, seed: int = 11
) -> dict[str, Any]:
    """One demo run on the production processes and ARF on the same stream; their figures and
    ratios (served / ARF)."""
    with socket.socket() as probe:  # the warehouse host serves a dashboard: a port of its own
        probe.bind((settings.bind_host, 0))
        dashboard_port = int(probe.getsockname()[1])
    demo = DemoRun(
        settings.model_copy(update={"dashboard_port": dashboard_port}),
        DemoOptions(events=events, rate=rate, seed=seed),
        lambda line: print(f"bench_loop: {line}", file=sys.stderr, flush=True),
    )
    try:
        summary = demo.run()
    finally:
        _stop_warehouse_host(demo.settings)
    served = summary["quality"]
    streamed = int(summary["events"])  # past ``events`` while the platform answered the drift
    arf = arf_prequential(
        demo.demo_config(),
        streamed,
        start_at=demo.bootstrap,
        drift_at=demo.drift_at,
        decision_at=summary["decision_at_event"],
        seed=seed,
    )
    detected = summary["drift_detected_at_event"]
    figures: dict[str, Any] = {
        "events": streamed,
        "rate_target": rate,
        "rate_achieved": summary["rate_achieved"],
        "decision": summary["decision"],
        "candidate_version": summary["candidate_version"],
        "canary_steps": summary["canary_steps"],
        "detection_delay_events": None if detected is None else detected - demo.drift_at,
        "seconds_detection_to_decision": summary["seconds_detection_to_decision"],
        "retrain_cpu_s": summary["retrain_cpu_s"],
        "retrain_stages_s": summary["retrain_stages_s"],
        "served_quality": served,
        "arf_quality": arf,
    }
    # accuracy is a mean, so the phases after the change combine ("after_change"); an AUC
    # does not, so it is compared phase by phase
    spans = (
        ("accuracy", "before", "before_drift"),
        ("accuracy", "after_change", ""),
        ("accuracy", "after_decision", "after_decision"),
        ("roc_auc", "before", "before_drift"),
        ("roc_auc", "after_drift", "after_drift"),
        ("roc_auc", "after_decision", "after_decision"),
    )
    for metric, span, phase in spans:
        mine, theirs = (
            q[phase].get(metric) if phase else _after_change(q, metric) for q in (served, arf)
        )
        figures[f"served_{metric}_{span}"], figures[f"arf_{metric}_{span}"] = mine, theirs
        figures[f"served_to_arf_{metric}_{span}_ratio"] = _ratio(mine, theirs)
    return figures
