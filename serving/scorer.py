"""Scoring requests of one model: route, validate, predict with fallbacks, make ``Prediction``s.

Shared by the Kafka agent and the HTTP server. Each request is routed by a sticky hash of its
entity id (its request id when it has none); requests of one version are scored together in one
batch call through the :class:`~headwater.serving.fallback.FallbackChain`. Requests whose features
the
routed version cannot read are rejected with the reason (the Kafka agent dead-letters them, the
HTTP server answers 422). Shadow versions score the same requests separately
(:meth:`Scorer.shadow`); their predictions carry route ``shadow`` and are never answers.

>>> import numpy as np
>>> from headwater.serving.routing import RoutingTable, routing_event
>>> class Half:
...     feature_names = ("x",)
...     def predict(self, x: np.ndarray) -> np.ndarray:
...         return x[:, 0] / 2
>>> table = RoutingTable()
>>> table.apply(routing_event("fraud", {1: 1.0}, shadows=[2]))
>>> scorer = Scorer("fraud", table, FallbackChain("fraud", lambda v: Half(), default_output=0))
>>> request = ScoreRequest("r1", "card-1", {"x": 3.0}, event_time_ms=0, received_at=0.0)
>>> [(p.version, p.route, p.output) for p in scorer.answer([request]).predictions]
[(1, 'champion', 1.5)]
>>> [(p.version, p.route) for p in scorer.shadow([request])]
[(2, 'shadow')]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from headwater.core.errors import HeadwaterError
from headwater.schemas.models import Prediction, Route
from headwater.serving.errors import InvalidFeatures
from headwater.serving.fallback import DEFAULT_VERSION, FallbackChain, Outcome
from headwater.serving.features import check_features, used_features
from headwater.serving.router import RouteDecision
from headwater.serving.routing import RoutingTable

Source = Literal["kafka", "http"]


@dataclass(frozen=True)
class ScoreRequest:
    """One request to score; ``received_at`` is on the scorer's clock (for the latency)."""

    request_id: str
    entity_id: str
    features: Mapping[str, float]
    event_time_ms: int
    received_at: float
    feature_set: str = ""
    feature_set_version: int = 0

    @property
    def routing_key(self) -> str:
        return self.entity_id or self.request_id


@dataclass(frozen=True)
class Rejected:
    request: ScoreRequest
    reason: str


@dataclass(frozen=True)
class Scored:
    """Answers, one per accepted request in input order, and the rejected requests."""

    predictions: list[Prediction] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


@dataclass
class ScorerCounts:
    answered: int = 0
    fallbacks: int = 0
    rejected: int = 0
    shadowed: int = 0
    shadow_failures: int = 0


class Scorer:
    """Routes and scores requests of ``model`` with the live routing in ``routing``
    (``pinned_version`` bypasses routing: every request goes to that version)."""

    def __init__(
        self,
        model: str,
        routing: RoutingTable,
        chain: FallbackChain,
        *,
        source: Source = "kafka",
        pinned_version: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.pinned_version = pinned_version
        self.routing = routing
        self.chain = chain
        self.source = source
        self.clock = clock
        self.counts = ScorerCounts()

    def answer(self, requests: Sequence[ScoreRequest]) -> Scored:
        """The answering prediction of every request the routed version can read."""
        groups = self.route(requests)
        if groups is None:
            reason = f"model {self.model!r} has no routing (publish one: headwater models route)"
            outcome = self.chain.default_outcome(len(requests), reason)
            return Scored(self._predictions(requests, outcome, "champion"))
        by_id: dict[str, Prediction] = {}
        rejected: list[Rejected] = []
        for decision, members in groups.items():
            accepted = self._validate(decision.version, members, rejected)
            if accepted:
                outcome = self.chain.predict(decision.version, [r.features for r in accepted])
                for p in self._predictions(accepted, outcome, decision.route):
                    by_id[p.request_id] = p
        self.counts.rejected += len(rejected)
        ordered = [by_id[r.request_id] for r in requests if r.request_id in by_id]
        return Scored(ordered, rejected)

    def route(
        self, requests: Sequence[ScoreRequest]
    ) -> dict[RouteDecision, list[ScoreRequest]] | None:
        """The routing step: the requests grouped by the version (and route) that answers
        them, or None while the model has no routing."""
        if self.pinned_version is not None:  # routing bypassed: one version answers all
            return {RouteDecision(self.pinned_version, "champion", ()): list(requests)}
        router = self.routing.router(self.model)
        if router is None:
            return None
        groups: dict[RouteDecision, list[ScoreRequest]] = {}
        for request in requests:
            groups.setdefault(router.assign(request.routing_key), []).append(request)
        return groups

    def shadow(self, requests: Sequence[ScoreRequest]) -> list[Prediction]:
        """Predictions of the shadow versions for ``requests``; a failing shadow logs nothing."""
        router = self.routing.router(self.model)
        if router is None or not router.shadows or not requests:
            return []
        predictions: list[Prediction] = []
        for version in router.shadows:
            try:
                outcome = self.chain.attempt(version, [r.features for r in requests])
            except HeadwaterError:
                self.counts.shadow_failures += 1
                continue
            predictions.extend(self._predictions(requests, outcome, "shadow"))
        self.counts.shadowed += len(predictions)
        return predictions

    def _validate(
        self, version: int, members: list[ScoreRequest], rejected: list[Rejected]
    ) -> list[ScoreRequest]:
        try:
            names = tuple(self.chain.load(version).feature_names)
        except HeadwaterError:
            return members  # the version cannot load: the fallback chain answers for it
        accepted = []
        for request in members:
            try:
                check_features(names, request.features)
                accepted.append(request)
            except InvalidFeatures as error:
                reason = f"{self.model} v{version}: {error}"
                rejected.append(Rejected(request, reason))
        return accepted

    def _predictions(
        self, requests: Sequence[ScoreRequest], outcome: Outcome, route: Route
    ) -> list[Prediction]:
        now = self.clock()
        served_at_ms = int(time.time() * 1000)
        if outcome.version == DEFAULT_VERSION and outcome.fallback:
            route = "default"
        names = outcome.feature_names
        predictions = [
            Prediction(
                request_id=r.request_id,
                entity_id=r.entity_id,
                model=self.model,
                version=outcome.version,
                route=route,
                output=float(output),
                features=used_features(names, r.features) if names else dict(r.features),
                feature_set=r.feature_set,
                feature_set_version=r.feature_set_version,
                event_time_ms=r.event_time_ms,
                served_at_ms=served_at_ms,
                latency_ms=max(0.0, (now - r.received_at) * 1000),
                fallback=outcome.fallback,
                fallback_reason=outcome.reason,
                source=self.source,
            )
            for r, output in zip(requests, outcome.outputs.tolist(), strict=True)
        ]
        if route != "shadow":
            self.counts.answered += len(predictions)
            self.counts.fallbacks += len(predictions) if outcome.fallback else 0
        return predictions
