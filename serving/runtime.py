"""Wiring one scoring process: registry index, loader, live routing and the fallback chain.

:func:`start_runtime` follows ``model-versions`` (to know each version's artifact) and then
``routing`` (to know the weights), both live on background threads, loading and warming every
version a routing names before that routing takes traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.schemas.models import ModelVersion, Routing
from headwater.serving.fallback import FallbackChain
from headwater.serving.follower import TopicFollower
from headwater.serving.guard import GuardPolicy
from headwater.serving.loader import ArtifactIndex, ModelLoader, follow_model_versions
from headwater.serving.routing import RoutingTable, follow_routing
from headwater.serving.scorer import Scorer, Source
from headwater.trainers.artifacts import ArtifactStore


def guard_policy(settings: HeadwaterSettings) -> GuardPolicy:
    """The per-version fault tolerance these settings declare."""
    return GuardPolicy(
        timeout_s=settings.serving_timeout_s,
        max_concurrency=settings.serving_max_concurrency,
        error_threshold=settings.serving_breaker_error_threshold,
        volume_threshold=settings.serving_breaker_volume,
        window_s=settings.serving_breaker_window_s,
        sleep_window_s=settings.serving_breaker_sleep_s,
    )


@dataclass
class ServingRuntime:
    """Everything a scoring process of one model shares between its scorers."""

    settings: HeadwaterSettings
    model: str
    bus: EventBus
    index: ArtifactIndex
    loader: ModelLoader
    routing: RoutingTable
    chain: FallbackChain
    followers: list[TopicFollower[ModelVersion] | TopicFollower[Routing]] = field(
        default_factory=list
    )

    def scorer(self, source: Source) -> Scorer:
        return Scorer(self.model, self.routing, self.chain, source=source)

    def stop(self) -> None:
        for follower in self.followers:
            follower.stop()
        self.chain.close()


def start_runtime(
    settings: HeadwaterSettings,
    model: str | None = None,
    *,
    policy: GuardPolicy | None = None,
    wait_s: float = 30.0,
    store: ArtifactStore | None = None,
) -> ServingRuntime:
    """Follow the registry and the routing of ``model`` (default: ``HEADWATER_SERVING_MODEL``)
    until both are caught up, then return the runtime."""
    name = model or settings.serving_model
    bus = EventBus(settings, **{"linger.ms": 1})
    index = ArtifactIndex()
    loader = ModelLoader(
        store or ArtifactStore.from_settings(settings),
        index,
        capacity=settings.serving_model_cache,
        deadletters=bus,
    )
    chain = FallbackChain(
        name,
        lambda version: loader.predictor(name, version),
        default_output=settings.serving_default_output,
        policy=policy or guard_policy(settings),
    )
    table = RoutingTable([lambda m, router: loader.prepare(m, router) if m == name else None])
    runtime = ServingRuntime(settings, name, bus, index, loader, table, chain)
    try:
        versions = follow_model_versions(settings, index, deadletters=bus, wait_s=wait_s)
        runtime.followers.append(versions)
        runtime.followers.append(follow_routing(settings, table, deadletters=bus, wait_s=wait_s))
    except BaseException:
        runtime.stop()
        raise
    return runtime
