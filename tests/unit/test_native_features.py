"""The native feature reader gives exactly Python's values: every built-in feature, every window
kind, filters, missing fields, late events, zero denominators, sums that need exact rounding."""

from __future__ import annotations

import random

from headwater.demo.features import FEATURE_SET as DEMO
from headwater.schemas.avro_plan import NATIVE_BUILT
from headwater.streams.feature_defs import (
    Aggregate,
    Count,
    CountDistinct,
    Feature,
    HistoryView,
    LastN,
    LastValue,
    Max,
    Mean,
    Min,
    Ratio,
    StdDev,
    Sum,
    TimeSinceLast,
)
from headwater.streams.featureset import EntityState, FeatureSet
from headwater.streams.windows import Window

if not NATIVE_BUILT:  # a failure, not a skip: the worker would silently run slower
    raise RuntimeError("headwater_native is not built: run scripts/install.sh")


def _every_feature() -> FeatureSet:
    windows = [Window.sliding(5_000), Window.tumbling(7_000), Window.hopping(9_000, 2_000)]
    features: list[Feature] = [
        LastValue("x"),
        LastN("x", 4),
        LastValue("y", name="y_last"),
        TimeSinceLast(),
    ]
    for i, w in enumerate(windows):
        features += [
            Count(w, name=f"n{i}"),
            Count(w, name=f"n_red{i}", where=("color", "red")),
            Sum("x", w, name=f"sum{i}"),
            Mean("x", w, name=f"mean{i}"),
            Min("y", w, name=f"min{i}"),
            Max("x", w, name=f"max{i}"),
            StdDev("x", w, name=f"std{i}"),
            CountDistinct("color", w, name=f"colors{i}"),
            CountDistinct("y", w, name=f"ys{i}"),
            Aggregate("mean", "x", w, f"red_mean{i}", ("color", "red")),
            Aggregate("sum", "x", w, f"red_sum{i}", ("color", "red")),
            Aggregate("stddev", "x", w, f"red_std{i}", ("color", "red")),
            Aggregate("distinct", "y", w, f"red_ys{i}", ("color", "red")),
        ]
        features.append(Ratio("x", f"mean{i}", name=f"x_to_mean{i}"))
    features.append(Ratio("y_last", "n_red0", name="y_per_red"))  # n_red0 is often 0
    return FeatureSet("every", 1, "id", "E", tuple(features), grace_ms=3_000, missing=-1.0)


def _bits(values: dict[str, float]) -> list[tuple[str, str]]:
    return [(name, value.hex()) for name, value in values.items()]


def _event(rng: random.Random) -> tuple[dict[str, float], dict[str, str]]:
    numeric: dict[str, float] = {}
    if rng.random() < 0.9:
        numeric["x"] = rng.choice(
            [rng.uniform(-50, 50), 1e16, -1e16, 0.1, rng.uniform(0, 1e-300), -0.0]
        )
    if rng.random() < 0.8:
        numeric["y"] = float(rng.randint(-3, 3))
    categorical = {"color": rng.choice(["red", "blue", "green"])} if rng.random() < 0.9 else {}
    return numeric, categorical


def test_every_built_in_feature_reads_the_same_natively_and_in_python() -> None:
    fs = _every_feature()
    assert fs.native_reader is not None
    rng = random.Random(7)
    compared = 0
    for _ in range(40):
        state, t = fs.new_state(), rng.randint(0, 20_000)
        for offset in range(60):
            t += rng.choice([0, 1, 400, 1_999, 2_000, 6_999, -2_500, 12_000])
            t = max(t, 0)
            numeric, categorical = _event(rng)
            # (update's own values are read before it prunes: compare reads of one history)
            if state.update(t, numeric, categorical, offset) is None:
                continue  # later than the grace
            for probe in (t, t - 1, t + 4_999, t - 8_000, rng.randint(0, t + 10_000)):
                assert _bits(state.read(probe)) == _bits(state.read_in_python(probe)), probe
                compared += 1
    assert compared > 5_000


def test_the_demo_feature_set_reads_natively_with_the_same_values() -> None:
    from headwater.demo.generator import DemoConfig, TransactionGenerator

    assert DEMO.native_reader is not None
    states: dict[str, EntityState] = {}
    generator = iter(TransactionGenerator(DemoConfig(seed=5, cards=40)))
    for offset in range(3_000):
        tx = next(generator).transaction
        state = states.setdefault(tx.card_id, DEMO.new_state())
        if state.update(tx.event_time_ms, tx.numeric(), tx.categorical(), offset) is not None:
            t = tx.event_time_ms
            assert _bits(state.read(t)) == _bits(state.read_in_python(t))


def test_a_feature_of_its_own_kind_reads_in_python() -> None:
    class Doubled(LastValue):
        def compute(self, view: HistoryView) -> list[float]:
            return [2 * v for v in super().compute(view)]

    fs = FeatureSet("own", 1, "id", "E", (Doubled("x"), Count(Window.sliding(1_000), name="n")))
    assert fs.native_reader is None
    state = fs.new_state()
    assert state.update(5, {"x": 1.5}, {}) == {"x": 3.0, "n": 1.0}
