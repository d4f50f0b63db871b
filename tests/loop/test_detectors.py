"""Drift statistics and change detectors against streams with known change points."""

from __future__ import annotations

import random

import numpy as np
import pytest
from river import drift as river_drift

from headwater.loop.calibration import jsd_threshold, ks_critical, psi_threshold
from headwater.loop.categorical import CategoricalSketch
from headwater.loop.drift_monitor import CategoricalReference, DriftMonitor, FeatureReference
from headwater.loop.error_detectors import AdwinDetector, PageHinkleyDetector
from headwater.loop.histogram import HistogramSketch, jensen_shannon, psi
from headwater.loop.numeric_block import NumericBlock
from headwater.loop.quantiles import QuantileSketch
from headwater.loop.references import from_trained
from headwater.schemas.avro_plan import NATIVE_BUILT
from headwater.trainers.model_family import FeatureReference as TrainedReference

WINDOW = 500


def _references(rng: np.random.Generator) -> dict[str, FeatureReference]:
    return {
        "amount": FeatureReference.from_sample("amount", rng.lognormal(3, 1, 20_000)),
        "distance": FeatureReference.from_sample("distance", rng.exponential(5, 20_000)),
        "hour": FeatureReference.from_sample("hour", rng.integers(0, 24, 20_000)),
    }


def _rows(rng: np.random.Generator, n: int, amount_mu: float = 3.0) -> list[dict[str, float]]:
    amounts = rng.lognormal(amount_mu, 1, n)
    distances = rng.exponential(5, n)
    hours = rng.integers(0, 24, n)
    return [
        {"amount": float(a), "distance": float(d), "hour": float(h)}
        for a, d, h in zip(amounts, distances, hours, strict=True)
    ]


def test_stationary_stream_raises_no_data_drift_alarm_over_a_long_run() -> None:
    rng = np.random.default_rng(11)
    monitor = DriftMonitor("fraud", 1, _references(rng), window=WINDOW, alpha=1e-4)
    alarms = [a for t, row in enumerate(_rows(rng, 100_000)) for a in monitor.update(row, t)]
    assert monitor.windows_tested == 200
    assert alarms == []


def test_mean_shift_is_detected_within_two_windows() -> None:
    rng = np.random.default_rng(12)
    monitor = DriftMonitor("fraud", 1, _references(rng), window=WINDOW, alpha=1e-4)
    stream = _rows(rng, 5_250) + _rows(rng, 5_000, amount_mu=3.4)
    change_at = 5_250
    first = next(
        t
        for t, row in enumerate(stream)
        if any(a.feature == "amount" for a in monitor.update(row, t))
    )
    assert change_at <= first < change_at + 2 * WINDOW


def test_windowed_false_alarm_rate_matches_the_calibration() -> None:
    """At a loose per-window level the observed alarm rate sits near alpha: calibrated, not
    merely conservative."""
    rng = np.random.default_rng(13)
    alpha, n, windows = 0.05, 400, 400
    base = HistogramSketch.from_sample(rng.normal(0, 1, 50_000))
    ks_sketch = QuantileSketch.from_sample(rng.normal(0, 1, 50_000), quantiles=100)
    live = base.empty_like()
    bins = len(base.edges) + 1
    hits = {"psi": 0, "jsd": 0, "ks": 0}
    for _ in range(windows):
        values = rng.normal(0, 1, n)
        live.reset()
        live.update_many(values)
        ks_sketch.reset()
        ks_sketch.update_many(values)
        hits["psi"] += psi(live, base) > psi_threshold(alpha, bins, n, 50_000)
        hits["jsd"] += jensen_shannon(live, base) > jsd_threshold(alpha, bins, n, 50_000)
        hits["ks"] += ks_sketch.ks() > ks_critical(alpha, n, 50_000)
    for statistic, count in hits.items():
        assert count / windows < 3 * alpha, statistic
    assert (hits["psi"] + hits["jsd"]) / (2 * windows) > alpha / 5


def test_categorical_shift_detected_and_stationary_quiet() -> None:
    rng = random.Random(14)
    shares = {"pos": 0.6, "web": 0.3, "atm": 0.1}

    def draw(weights: list[float]) -> list[dict[str, float]]:
        picks = rng.choices([0.0, 1.0, 2.0], weights, k=20_000)
        return [{"channel": v} for v in picks]

    reference = CategoricalReference("channel", {0.0: 0.6, 1.0: 0.3, 2.0: 0.1}, 50_000)
    monitor = DriftMonitor("fraud", 1, {"channel": reference}, window=WINDOW)
    quiet = [a for t, row in enumerate(draw([0.6, 0.3, 0.1])) for a in monitor.update(row, t)]
    assert quiet == []
    shifted = [
        a for t, row in enumerate(draw([0.45, 0.45, 0.1])[:WINDOW]) for a in monitor.update(row, t)
    ]
    assert [a.statistic for a in shifted] == ["chi2"]
    sketch = CategoricalSketch(shares, 50_000)
    sketch.update_many(["pos"] * 60 + ["web"] * 30 + ["new"] * 10)
    assert sketch.linf() > 0.09  # an unseen category is drift, not a crash


def _bernoulli(rng: random.Random, p: float, n: int) -> list[float]:
    return [float(rng.random() < p) for _ in range(n)]


def test_error_detectors_quiet_on_stationary_errors_and_fast_on_a_jump() -> None:
    rng = random.Random(15)
    for detector in (AdwinDetector(), PageHinkleyDetector(events_between_false_alarms=100_000)):
        assert not any(detector.update(e) for e in _bernoulli(rng, 0.15, 20_000)), (
            detector.statistic
        )
        delay = next(
            (i for i, e in enumerate(_bernoulli(rng, 0.35, 3_000)) if detector.update(e)), None
        )
        assert delay is not None and delay < 1_000, detector.statistic


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_page_hinkley_alarms_where_rivers_does(native: bool) -> None:
    """Ours is river's ``PageHinkley(mode="up")`` written out: the same alarms, update by
    update, over shifts up and down and the fresh starts after each alarm; in Python and in
    ``headwater_native`` alike, to the bit."""
    assert NATIVE_BUILT, "headwater_native is not built: run scripts/install.sh"
    rng = random.Random(4)
    errors = [e for p in (0.1, 0.4, 0.05, 0.6, 0.2, 0.7) for e in _bernoulli(rng, p, 4_000)]
    ours = PageHinkleyDetector(events_between_false_alarms=20_000, native=native)
    assert (ours._native is not None) == native
    theirs = river_drift.PageHinkley(
        min_instances=30, delta=ours.delta, threshold=ours.threshold, mode="up"
    )
    alarms = []
    for i, error in enumerate(errors):
        theirs.update(error)  # type: ignore[no-untyped-call]
        assert ours.update(error) == theirs.drift_detected, i
        assert ours.value == theirs._sum_increase - theirs._min_increase, i
        alarms += [i] if theirs.drift_detected else []
    assert len(alarms) >= 3  # the shifts up were found, each after a fresh start


def test_page_hinkley_native_and_python_agree_on_every_reading() -> None:
    """The change point and the statistic too, read after every update, alarms included."""
    assert NATIVE_BUILT, "headwater_native is not built: run scripts/install.sh"
    rng = random.Random(9)
    errors = [e for p in (0.1, 0.5, 0.1, 0.6) for e in _bernoulli(rng, p, 3_000)]
    errors += [rng.random() for _ in range(3_000)]  # losses, not only 0/1 mistakes
    native = PageHinkleyDetector(events_between_false_alarms=5_000, native=True)
    python = PageHinkleyDetector(events_between_false_alarms=5_000, native=False)
    assert native.value == python.value == 0.0
    alarms = 0
    for i, error in enumerate(errors):
        alarmed = native.update(error)
        assert alarmed == python.update(error), i
        assert (native.value, native.since_change) == (python.value, python.since_change), i
        alarms += alarmed
    assert alarms >= 2


def test_a_constant_training_feature_is_skipped_not_a_crash() -> None:
    constant = TrainedReference.of(np.ones(1000))  # the trainers' bundle: one bin
    monitor = DriftMonitor("fraud", 1, {"flag": from_trained("flag", constant)}, window=100)
    assert [a for t in range(300) for a in monitor.update({"flag": 1.0}, t)] == []
    sample = FeatureReference.from_sample("flag", [1.0] * 1000)  # two bins around the value
    monitor = DriftMonitor("fraud", 1, {"flag": sample}, window=100)
    assert [a for t in range(100) for a in monitor.update({"flag": 1.0}, t)] == []
    assert [a for t in range(100) for a in monitor.update({"flag": 0.0}, t)] != []


def test_the_vectorised_block_equals_the_per_feature_sketches() -> None:
    rng = np.random.default_rng(16)
    refs = [
        FeatureReference.from_sample("gauss", rng.normal(0, 1, 3000)),
        FeatureReference.from_sample("hours", rng.integers(0, 24, 3000)),
        from_trained("trained", TrainedReference.of(rng.exponential(3, 3000))),
    ]
    block = NumericBlock(refs)
    window = np.column_stack(
        [rng.normal(0.3, 1, 400), rng.integers(0, 20, 400), rng.exponential(4, 400)]
    ).astype(float)
    window[::7, 0] = np.nan  # absent values count nowhere
    stats = block.statistics(window)
    for i, ref in enumerate(refs):
        values = window[:, i][~np.isnan(window[:, i])]
        base = HistogramSketch.from_counts(ref.histogram_edges, ref.histogram_counts)
        live = base.empty_like()
        live.update_many(values)
        sketch = QuantileSketch(ref.quantiles, ref.quantile_cdf, ref.size, strict=ref.strict_cdf)
        sketch.update_many(values)
        assert stats["n"][i] == values.size
        assert abs(stats["psi"][i] - psi(live, base)) < 1e-9, ref.name
        assert abs(stats["jsd"][i] - jensen_shannon(live, base)) < 1e-9, ref.name
        assert abs(stats["ks"][i] - sketch.ks()) < 1e-9, ref.name
