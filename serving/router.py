"""Sticky weighted routing of requests to model versions (champion, canary, shadows).

A key (entity id or request id) hashes to a point in [0, 1); the versions' weights, normalised
and laid end to end in version order, decide which version that point falls in. The same key
always lands on the same version while the weights stay put, so a user sees one version; when a
canary's weight grows, only the keys in the grown slice move.

>>> router = WeightedRouter({3: 0.9, 4: 0.1}, shadows=(5,))
>>> decision = router.assign("card-42")
>>> decision == router.assign("card-42"), decision.version in (3, 4), decision.shadows
(True, True, (5,))
>>> router.champion, router.route_of(4)
(3, 'canary')
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from headwater.serving.errors import RoutingError

RouteName = Literal["champion", "canary", "shadow"]
_SCALE = float(1 << 64)


def key_point(key: str) -> float:
    """The key's stable point in [0, 1): the same in every process and every run.

    >>> key_point("a") == key_point("a"), 0.0 <= key_point("a") < 1.0
    (True, True)
    """
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


@dataclass(frozen=True)
class RouteDecision:
    """Which version answers a request, under which route, and which shadows score it too."""

    version: int
    route: RouteName
    shadows: tuple[int, ...]


class WeightedRouter:
    """Assigns keys to versions in proportion to ``weights``; ``shadows`` score every request.

    The champion is the version with the largest weight (the lower version on a tie); every
    other weighted version is a canary.
    """

    def __init__(self, weights: Mapping[int, float], shadows: Sequence[int] = ()) -> None:
        live = {v: float(w) for v, w in weights.items() if w > 0}
        if any(w < 0 for w in weights.values()):
            raise RoutingError(f"routing weights must not be negative, got {dict(weights)}")
        if not live:
            raise RoutingError(f"routing needs at least one version with weight > 0: {weights}")
        self.weights = dict(sorted(live.items()))
        self.shadows = tuple(v for v in dict.fromkeys(shadows) if v not in live)
        total = sum(self.weights.values())
        self._versions = list(self.weights)
        self._bounds: list[float] = []
        running = 0.0
        for weight in self.weights.values():
            running += weight / total
            self._bounds.append(running)
        self._bounds[-1] = 1.0  # rounding must never leave a point past the last version
        self.champion = max(self._versions, key=lambda v: (self.weights[v], -v))
        self._decisions = [RouteDecision(v, self.route_of(v), self.shadows) for v in self._versions]

    def route_of(self, version: int) -> RouteName:
        if version in self.shadows:
            return "shadow"
        return "champion" if version == self.champion else "canary"

    def assign(self, key: str) -> RouteDecision:
        """The version that answers ``key``, its route, and the shadows that score it too."""
        decisions = self._decisions
        if len(decisions) == 1:  # a champion alone answers every key: nothing to hash
            return decisions[0]
        index = bisect.bisect_right(self._bounds, key_point(key))
        return decisions[min(index, len(decisions) - 1)]

    def __repr__(self) -> str:
        return f"WeightedRouter({self.weights}, shadows={self.shadows})"


def parse_weights(text: str) -> dict[int, float]:
    """Weights as the CLI writes them: ``v3=0.9,v4=0.1`` (the ``v`` is optional).

    >>> parse_weights("v3=0.9, 4=0.1")
    {3: 0.9, 4: 0.1}
    """
    weights: dict[int, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        version = name.strip().lower().removeprefix("v")
        try:
            if not sep or not version.isdigit():
                raise ValueError(part)
            weights[int(version)] = float(value)
        except ValueError:
            raise RoutingError(
                f"bad weight {part!r}: expected VERSION=WEIGHT such as v3=0.9"
            ) from None
    if not weights:
        raise RoutingError(f"no weights in {text!r}: expected e.g. v3=0.9,v4=0.1")
    return weights


def parse_version(text: str) -> int:
    """A version as the CLI writes it: ``v5`` or ``5``.

    >>> parse_version("v5")
    5
    """
    digits = text.strip().lower().removeprefix("v")
    if not digits.isdigit() or int(digits) < 1:
        raise RoutingError(f"bad version {text!r}: expected e.g. v5")
    return int(digits)
