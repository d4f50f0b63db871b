"""Sticky weighted routing: the split follows the weights, and a key keeps its version."""

from __future__ import annotations

from collections import Counter

import pytest

from headwater.serving.errors import RoutingError
from headwater.serving.router import WeightedRouter, parse_version, parse_weights

IDS = [f"request-{i}" for i in range(10_000)]


@pytest.mark.parametrize(
    "weights", [{3: 0.9, 4: 0.1}, {1: 0.5, 2: 0.5}, {1: 0.7, 2: 0.2, 3: 0.1}, {7: 1.0}]
)
def test_split_is_within_one_percent_of_the_weights(weights: dict[int, float]) -> None:
    router = WeightedRouter(weights)
    counts = Counter(router.assign(key).version for key in IDS)
    for version, weight in weights.items():
        assert abs(counts[version] / len(IDS) - weight) <= 0.01, (version, counts)


def test_assignment_is_sticky_across_router_instances() -> None:
    first = WeightedRouter({3: 0.9, 4: 0.1})
    second = WeightedRouter({4: 0.1, 3: 0.9})  # same weights, another order, another object
    assert all(first.assign(k) == second.assign(k) for k in IDS[:2000])


def test_growing_a_canary_moves_only_the_grown_slice() -> None:
    before = WeightedRouter({3: 0.9, 4: 0.1})
    after = WeightedRouter({3: 0.8, 4: 0.2})
    moved = [k for k in IDS if before.assign(k).version != after.assign(k).version]
    assert all(before.assign(k).version == 3 and after.assign(k).version == 4 for k in moved)
    assert abs(len(moved) / len(IDS) - 0.1) <= 0.01


def test_routes_name_champion_canary_and_shadow() -> None:
    router = WeightedRouter({3: 0.9, 4: 0.1}, shadows=[5, 5, 3])
    assert router.route_of(3) == "champion"
    assert router.route_of(4) == "canary"
    assert router.shadows == (5,)  # a weighted version is never also its own shadow
    assert {router.assign(k).route for k in IDS[:500]} == {"champion", "canary"}


@pytest.mark.parametrize("weights", [{}, {3: 0.0}, {3: -1.0, 4: 1.0}])
def test_bad_weights_are_refused(weights: dict[int, float]) -> None:
    with pytest.raises(RoutingError):
        WeightedRouter(weights)


@pytest.mark.parametrize("text", ["", "v3", "v3=x", "vx=0.5", "3:0.5"])
def test_bad_weight_text_is_refused_with_the_part(text: str) -> None:
    with pytest.raises(RoutingError, match="weight"):
        parse_weights(text)


def test_versions_parse_with_or_without_v() -> None:
    assert parse_version("v12") == parse_version("12") == 12
    with pytest.raises(RoutingError):
        parse_version("v0")
