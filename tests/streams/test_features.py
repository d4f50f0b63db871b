"""Feature declarations and entity state as pure objects: checked against brute force."""

from __future__ import annotations

import math
import random

import orjson
import pytest

from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.domain import load_domain
from headwater.streams.errors import FeatureSetError
from headwater.streams.feature_defs import (
    Aggregate,
    Count,
    CountDistinct,
    Feature,
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
from headwater.streams.feature_module import FeatureModule, load_feature_module
from headwater.streams.featureset import EntityState, FeatureSet
from headwater.streams.windows import Window

WINDOWS = {
    "sliding": Window.sliding(50_000),
    "tumbling": Window.tumbling(40_000),
    "hopping": Window.hopping(60_000, 15_000),
}


def _feature_set(grace_ms: int = 0) -> FeatureSet:
    features: list[Feature] = []
    for label, window in WINDOWS.items():
        features += [
            Count(window, name=f"n_{label}"),
            Sum("x", window, name=f"sum_{label}"),
            Mean("x", window, name=f"mean_{label}"),
            Min("x", window, name=f"min_{label}"),
            Max("x", window, name=f"max_{label}"),
            StdDev("x", window, name=f"std_{label}"),
            CountDistinct("c", window, name=f"distinct_{label}"),
            Count(window, name=f"n_a_{label}", where=("c", "a")),
            Aggregate("mean", "x", window, name=f"mean_a_{label}", where=("c", "a")),
        ]
    features += [LastValue("x"), LastN("x", 2), TimeSinceLast(), Ratio("x", "mean_sliding")]
    return FeatureSet("test", 1, "id", "t.Event", tuple(features), grace_ms=grace_ms, missing=-1.0)


def _brute(events: list[tuple[int, float, str]], t: int, missing: float) -> dict[str, float]:
    seen = [e for e in events if e[0] <= t]
    out: dict[str, float] = {}
    for label, window in WINDOWS.items():
        inside = [e for e in seen if e[0] >= window.start(t)]
        xs = [e[1] for e in inside]
        m = math.fsum(xs) / len(xs) if xs else missing
        out[f"n_{label}"] = float(len(inside))
        out[f"sum_{label}"] = math.fsum(xs)
        out[f"mean_{label}"] = m
        out[f"min_{label}"] = min(xs) if xs else missing
        out[f"max_{label}"] = max(xs) if xs else missing
        out[f"std_{label}"] = (
            math.sqrt(math.fsum((x - m) ** 2 for x in xs) / len(xs)) if xs else missing
        )
        out[f"distinct_{label}"] = float(len({e[2] for e in inside}))
        out[f"n_a_{label}"] = float(sum(e[2] == "a" for e in inside))
        xa = [e[1] for e in inside if e[2] == "a"]
        out[f"mean_a_{label}"] = math.fsum(xa) / len(xa) if xa else missing
    return out


def test_windowed_aggregates_match_brute_force() -> None:
    rng = random.Random(11)
    fs = _feature_set()
    state = fs.new_state()
    events: list[tuple[int, float, str]] = []
    t = 1_000_000
    for offset in range(400):
        t += rng.randint(0, 9_000)
        event = (t, round(rng.uniform(-5, 50), 3), rng.choice("abc"))
        events.append(event)
        values = state.update(t, {"x": event[1]}, {"c": event[2]}, offset)
        assert values is not None
        expected = _brute(events, t, fs.missing)
        for name, value in expected.items():
            assert math.isclose(values[name], value, rel_tol=1e-12, abs_tol=1e-9), name
        assert values["x"] == event[1] == values["x_last_1"]
        assert values["x_last_2"] == (events[-2][1] if len(events) > 1 else -1.0)
        previous = (t - events[-2][0]) / 1000 if len(events) > 1 else -1.0
        assert values["seconds_since_last_event"] == previous


def test_late_events_within_grace_are_applied_and_beyond_are_refused() -> None:
    fs = _feature_set(grace_ms=10_000)
    state = fs.new_state()
    state.update(100_000, {"x": 1.0}, {"c": "a"}, 0)
    assert not state.is_late(91_000)
    late = state.update(91_000, {"x": 5.0}, {"c": "b"}, 1)
    assert late is not None and late["n_sliding"] == 1.0  # as of its own time: itself only
    assert state.read(100_000)["n_sliding"] == 2.0
    assert state.is_late(89_999)
    assert state.update(89_999, {"x": 9.0}, {"c": "b"}, 2) is None


def test_redelivered_offsets_are_skipped() -> None:
    state = _feature_set().new_state()
    state.update(1_000, {"x": 1.0}, {"c": "a"}, 5)
    assert state.update(2_000, {"x": 1.0}, {"c": "a"}, 5) is None
    assert state.events == 1


def test_state_survives_serialization_midstream() -> None:
    fs = _feature_set(grace_ms=5_000)
    rng = random.Random(3)
    stream = [
        (1_000 * i + rng.randint(-4_000, 0), rng.uniform(0, 9), rng.choice("ab"))
        for i in range(200)
    ]
    whole, resumed = fs.new_state(), fs.new_state()
    expected = [whole.update(t, {"x": x}, {"c": c}, i) for i, (t, x, c) in enumerate(stream)]
    got = []
    for i, (t, x, c) in enumerate(stream):
        if i % 37 == 0:
            resumed = EntityState.from_bytes(fs, resumed.to_bytes())
        got.append(resumed.update(t, {"x": x}, {"c": c}, i))
    assert got == expected


def test_state_of_the_first_changelog_format_is_read() -> None:
    """States written as rows (format 1, before columns) recover to the same values."""
    fs = _feature_set()
    state = fs.new_state()
    for i in range(20):
        state.update(1_000 * i, {"x": float(i)}, {"c": "ab"[i % 2]}, i)
    times, columns, newest, offset, events = orjson.loads(state.to_bytes())[1:]
    rows = [list(row) for row in zip(*columns, strict=True)]
    first = orjson.dumps([times, rows, newest, offset, events])
    recovered = EntityState.from_bytes(fs, first)
    assert recovered.read(19_000) == state.read(19_000)
    assert recovered.to_bytes() == state.to_bytes()


def test_events_without_a_numeric_field_are_left_out_of_its_aggregates() -> None:
    window = Window.sliding(60_000)
    fs = FeatureSet(
        "gaps", 1, "id", "t.Event",
        (Sum("x", window, name="s"), Mean("x", window, name="m"), Count(window, name="n"),
         LastValue("x", name="last")),
        missing=-1.0,
    )  # fmt: skip
    state = fs.new_state()
    state.update(1_000, {"x": 2.0}, {})
    assert state.update(2_000, {}, {}) == {"s": 2.0, "m": 2.0, "n": 2.0, "last": -1.0}
    assert state.update(3_000, {"x": 4.0}, {}) == {"s": 6.0, "m": 3.0, "n": 3.0, "last": 4.0}


def test_history_is_pruned_to_the_horizon() -> None:
    fs = _feature_set()
    state = fs.new_state()
    for i in range(5_000):
        state.update(i * 1_000, {"x": 1.0}, {"c": "a"}, i)
    assert len(state.to_bytes()) < 10_000


def test_declarations_are_checked() -> None:
    window = Window.sliding(1_000)
    with pytest.raises(FeatureSetError, match="twice"):
        FeatureSet("f", 1, "id", "t", (Count(window, name="n"), Sum("x", window, name="n")))
    with pytest.raises(FeatureSetError, match="unknown features"):
        FeatureSet("f", 1, "id", "t", (Count(window, name="n"), Ratio("n", "m")))
    with pytest.raises(FeatureSetError, match="hop"):
        Window.hopping(1_000, 2_000)
    with pytest.raises(FeatureSetError, match="version"):
        FeatureSet("f", 0, "id", "t", ())


def test_feature_module_must_match_the_domain() -> None:
    domain = load_domain(SchemaCatalog.default())
    module = load_feature_module("headwater.demo.features")
    module.check_domain(domain)
    wrong = FeatureSet("f", 1, "card_id", domain.name, (LastValue("cvv"),))
    with pytest.raises(FeatureSetError, match="cvv"):
        FeatureModule("x", wrong, module.constraints).check_domain(domain)
    with pytest.raises(FeatureSetError, match="cannot be imported"):
        load_feature_module("no_such_module.features")
