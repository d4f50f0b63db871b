"""The loop's benchmark, both figures measured in the same run on the demo domain's real
feature vectors:

* the per-event cost (CPU time) of the drift statistics as a fraction of scoring cost (target
  ≤ 10%);
  scoring cost is what the Kafka scorer does per event apart from the broker round trip
  (decode the feature record, route, guard, predict, encode the prediction), and the ratio to
  the in-process scoring path alone is reported too;
* from a ``headwater demo`` summary, time to mitigate against a baseline that checks for
  drift on an hourly schedule with the same retrain and canary;
* given a broker (``settings``), the loop on the production path: the demo's stream through
  the processes ``headwater up`` starts — detection delay in events, seconds from detection to
  the canary's decision, served accuracy before and after the change — against river's
  ``forest.ARFClassifier`` learning prequentially on the same stream, as ratios
  (:mod:`bench.loop_production`).

``python -m bench.bench_loop [--events N] [--demo-summary FILE] [--loop-events N]`` prints a
JSON object (``--loop-events 0`` leaves the production loop out).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from headwater.core.settings import HeadwaterSettings
from headwater.demo.features import FEATURE_SET
from headwater.demo.generator import DemoConfig, TransactionGenerator
from headwater.infra.event_bus import make_codec
from headwater.loop.drift_monitor import DriftMonitor, FeatureReference
from headwater.loop.error_detectors import AdwinDetector, ErrorDetector, PageHinkleyDetector
from headwater.loop.loop_handler import LoopHandler, References
from headwater.schemas.models import FeatureVector, Label, Prediction
from headwater.serving.fallback import FallbackChain, Predictor
from headwater.serving.features import feature_matrix
from headwater.serving.predictor import ServingPredictor
from headwater.serving.routing import RoutingTable, routing_event
from headwater.serving.scorer import Scorer, ScoreRequest
from headwater.streams.featureset import EntityState
from headwater.trainers.model_family import MLPConfig, ModelBundle, build_network

TARGET_RATIO = 0.10
REPEATS = 5
# Each cost is timed over at least this many events (the live vectors again, in order, when
# there are fewer): at bench all's small size a pass over 2,000 events took the drift side
# about 3 ms of CPU time, too short a span to time; both sides get the same passes.
MIN_TIMED_EVENTS = 10_000
SCORING_BATCH = 64  # the Kafka scorer's micro-batch order of magnitude
HOURLY_S = 3600.0


def demo_vectors(n: int, seed: int = 11) -> list[dict[str, float]]:
    """Feature vectors of the demo domain, computed by its real declarations."""
    generator = TransactionGenerator(DemoConfig(seed=seed, cards=200))
    states: dict[str, EntityState] = {}
    vectors = []
    for i in range(n):
        tx = generator.next(i).transaction
        state = states.setdefault(tx.card_id, FEATURE_SET.new_state())
        values = state.update(tx.event_time_ms, tx.numeric(), tx.categorical(), i)
        vectors.append(dict(values or {}))
    return vectors


def _clock() -> float:
    """This process's CPU time: the work per event, which neighbours on a shared machine do
    not inflate the way they inflate wall-clock time (both sides are measured the same way)."""
    return time.process_time()


def _per_event_us(started: float, n: int) -> float:
    return (_clock() - started) / n * 1e6


def model_cost_us(bundle: Predictor, vectors: Sequence[Mapping[str, float]]) -> float:
    """The network alone: feature matrix and batch predict."""
    names = bundle.feature_names
    started = _clock()
    for i in range(0, len(vectors), SCORING_BATCH):
        bundle.predict(feature_matrix(names, vectors[i : i + SCORING_BATCH]))
    return _per_event_us(started, len(vectors))


def scoring_cost_us(bundle: Predictor, vectors: Sequence[Mapping[str, float]]) -> float:
    """Serving's scoring path in process: routing, validation, fallback chain and guard, the
    network, and the ``Prediction`` events (the broker's share is left out on both sides)."""
    table = RoutingTable()
    table.apply(routing_event("bench", {1: 1.0}))
    chain = FallbackChain("bench", lambda version: bundle, default_output=0.0)
    scorer = Scorer("bench", table, chain)
    now = time.monotonic()
    requests = [ScoreRequest(f"r{i}", f"c{i % 200}", v, i, now) for i, v in enumerate(vectors)]
    started = _clock()
    for i in range(0, len(requests), SCORING_BATCH):
        scorer.answer(requests[i : i + SCORING_BATCH])
    cost = _per_event_us(started, len(vectors))
    chain.close()
    return cost


def scoring_process_cost_us(bundle: Predictor, vectors: Sequence[Mapping[str, float]]) -> float:
    """What the Kafka scorer does per event besides the broker round trip: decode the
    ``features`` record, score it (as :func:`scoring_cost_us`), encode the ``Prediction``."""
    codec = make_codec(HeadwaterSettings())
    encoded = [
        codec.encode(
            FeatureVector.SCHEMA,
            FeatureVector(
                entity_id=f"c{i % 200}",
                feature_set="card_activity",
                feature_set_version=1,
                event_id=f"e{i}",
                event_time_ms=i,
                computed_at_ms=i,
                values=dict(v),
            ).to_avro(),
        )
        for i, v in enumerate(vectors)
    ]
    table = RoutingTable()
    table.apply(routing_event("bench", {1: 1.0}))
    chain = FallbackChain("bench", lambda version: bundle, default_output=0.0)
    scorer = Scorer("bench", table, chain)
    started = _clock()
    for i in range(0, len(encoded), SCORING_BATCH):
        requests = []
        for data in encoded[i : i + SCORING_BATCH]:
            record = FeatureVector.from_avro(codec.decode(data, FeatureVector.SCHEMA)[1])
            requests.append(
                ScoreRequest(
                    record.event_id,
                    record.entity_id,
                    record.values,
                    record.event_time_ms,
                    time.monotonic(),
                )
            )
        for prediction in scorer.answer(requests).predictions:
            codec.encode(Prediction.SCHEMA, prediction.to_avro())
    cost = _per_event_us(started, len(encoded))
    chain.close()
    return cost


def drift_cost_us(
    references: Mapping[str, FeatureReference], vectors: Sequence[Mapping[str, float]]
) -> dict[str, float]:
    monitor = DriftMonitor("bench", 1, references, window=500)
    started = _clock()
    for t, vector in enumerate(vectors):
        monitor.update(vector, t)
    monitor_us = _per_event_us(started, len(vectors))
    detectors: list[ErrorDetector] = [AdwinDetector(), PageHinkleyDetector()]
    errors = (np.random.default_rng(0).random(len(vectors)) < 0.1).astype(float).tolist()
    started = _clock()
    for error in errors:
        for detector in detectors:
            detector.update(error)
    return {
        "drift_monitor_us": monitor_us,
        "error_detectors_us": _per_event_us(started, len(errors)),
    }


def loop_handler_cost_us(
    references: Mapping[str, FeatureReference], vectors: Sequence[Mapping[str, float]]
) -> float:
    """The whole loop handler per scored and labelled event (join, metrics, drift, detectors)."""

    def lookup(model: str, version: int, sha256: str) -> References | None:
        return references

    handler = LoopHandler(lookup)
    predictions = [
        Prediction(
            request_id=f"r{i}",
            entity_id="c",
            model="bench",
            version=1,
            route="champion",
            output=0.2,
            features=dict(v),
            event_time_ms=i,
            served_at_ms=i,
            latency_ms=1.0,
        )
        for i, v in enumerate(vectors)
    ]
    labels = [
        Label(request_id=f"r{i}", entity_id="c", label=0.0, event_time_ms=i, labeled_at_ms=i)
        for i in range(len(vectors))
    ]
    started = _clock()
    for prediction, label in zip(predictions, labels, strict=True):
        handler.handle("predictions", prediction)
        handler.handle("labels", label)
    return _per_event_us(started, len(vectors))


def mitigation(summary: Mapping[str, Any]) -> dict[str, float]:
    """Time to mitigate of the demo's loop against an hourly drift check with the same retrain
    and canary: the hourly check finds a drift on average half an hour after it began (uniform
    arrival within the hour), and then needs the same retrain and canary time."""
    detect = float(summary["seconds_to_detect"])
    decide = float(summary["seconds_to_decision"])
    after_detection = decide - detect
    baseline = HOURLY_S / 2.0 + after_detection
    return {
        "loop_seconds_to_detect": detect,
        "loop_seconds_to_mitigate": decide,
        "hourly_expected_seconds_to_detect": HOURLY_S / 2.0,
        "hourly_expected_seconds_to_mitigate": baseline,
        "speedup": baseline / decide if decide > 0 else float("inf"),
    }


# The production loop needs a stream that outlasts detection, the retrain and four canary steps
# at a constant rate; the demo streams on past it until the canary decides.
LOOP_EVENTS = 12_000  # streamed on, at the same rate, until the decision (at most 3x)
LOOP_RATE = 300.0


def run(
    events: int = 20_000,
    demo_summary: Mapping[str, Any] | None = None,
    settings: HeadwaterSettings | None = None,
    loop_events: int = LOOP_EVENTS,
    loop_rate: float = LOOP_RATE,
) -> dict[str, Any]:
    vectors = demo_vectors(events)
    half = len(vectors) // 2
    names = tuple(sorted(vectors[-1]))
    train = np.asarray(feature_matrix(names, vectors[:half]))
    config = MLPConfig(width=64, depth=2)
    bundle = ModelBundle.create(build_network(config, len(names)), config, names, train)
    # What the scorers run (the loader wraps every bundle so): the numpy forward pass, on the
    # scoring thread. Against ModelBundle.predict through a guard thread, the scoring process
    # cost 2.5x as much per event, and the drift statistics' share looked 2.5x smaller.
    served = ServingPredictor(bundle)
    references = {
        name: FeatureReference.from_sample(name, train[:, i]) for i, name in enumerate(names)
    }
    distinct = vectors[half:]
    live = distinct * max(1, -(-MIN_TIMED_EVENTS // max(len(distinct), 1)))
    # Interleaved repeats, each a ratio of two runs made back to back: the machine is shared,
    # so absolute times wander; the median ratio is what we report.
    samples = []
    for _ in range(REPEATS):
        model = model_cost_us(served, live)
        scoring = scoring_cost_us(served, live)
        process = scoring_process_cost_us(served, live)
        drift = drift_cost_us(references, live)
        samples.append((process, scoring, model, drift))
    samples.sort(key=lambda s: (s[3]["drift_monitor_us"] + s[3]["error_detectors_us"]) / s[0])
    process, scoring, model, drift = samples[len(samples) // 2]
    statistics = drift["drift_monitor_us"] + drift["error_detectors_us"]
    result: dict[str, Any] = {
        "events": len(distinct),
        "timed_events": len(live),
        "features": len(names),
        "scoring_process_us_per_event": process,
        "scoring_us_per_event": scoring,
        "model_only_us_per_event": model,
        **drift,
        "drift_statistics_us_per_event": statistics,
        "data_drift_to_scoring_process_ratio": drift["drift_monitor_us"] / process,
        "drift_to_scoring_process_ratio": statistics / process,
        "drift_to_scoring_ratio": statistics / scoring,
        "target_ratio": TARGET_RATIO,
        "within_target": statistics / process <= TARGET_RATIO,
        # below 1 meets the target
        "drift_to_scoring_process_vs_target_ratio": statistics / process / TARGET_RATIO,
        "drift_to_model_only_ratio": statistics / model,
        "loop_handler_us_per_event": loop_handler_cost_us(references, live),
    }
    if demo_summary is not None:
        result["time_to_mitigate"] = mitigation(demo_summary)
    if settings is not None and loop_events > 0:
        from bench.loop_production import production_loop

        result["production_loop"] = production_loop(settings, loop_events, loop_rate)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument(
        "--demo-summary",
        type=Path,
        default=None,
        help="a `headwater demo --json` summary, for time to mitigate",
    )
    parser.add_argument(
        "--loop-events",
        type=int,
        default=LOOP_EVENTS,
        help="events of the production loop run (0: leave it out)",
    )
    args = parser.parse_args(argv)
    summary = json.loads(args.demo_summary.read_text()) if args.demo_summary else None
    if args.loop_events <= 0:
        print(json.dumps(run(args.events, summary), indent=2))
        return
    from bench.__main__ import local_broker

    with local_broker() as broker:
        result = run(args.events, summary, broker(), args.loop_events)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
