"""Live routing: the fold of the compacted ``routing`` topic, and publishing changes to it.

Each ``Routing`` record holds the whole routing of one model: version weights (keys are version
numbers as decimal strings, e.g. ``{"3": 0.9, "4": 0.1}``) and shadow versions. The latest
record of a model wins. :class:`RoutingTable` is the pure fold; a
:class:`~headwater.serving.follower.TopicFollower` keeps it current in every scoring process.

>>> table = RoutingTable()
>>> table.apply(Routing(model="fraud", weights={"3": 0.9, "4": 0.1}, shadows=[5],
...                     updated_at_ms=1))
>>> table.router("fraud").assign("card-1").shadows, table.router("other")
((5,), None)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.schemas.models import Routing
from headwater.serving.errors import RoutingError
from headwater.serving.follower import TopicFollower
from headwater.serving.router import WeightedRouter, parse_version

RoutingListener = Callable[[str, WeightedRouter], None]


def router_of(routing: Routing) -> WeightedRouter:
    """The router a ``Routing`` event describes, or a :class:`RoutingError` naming the model."""
    try:
        weights = {parse_version(k): w for k, w in routing.weights.items()}
        return WeightedRouter(weights, routing.shadows)
    except RoutingError as error:
        raise RoutingError(f"routing of model {routing.model!r}: {error}") from None


class RoutingTable:
    """The current router of each model. ``listeners`` run before a new router takes traffic
    (that is where new versions are loaded and warmed)."""

    def __init__(self, listeners: Sequence[RoutingListener] = ()) -> None:
        self.listeners = list(listeners)
        self._routers: dict[str, WeightedRouter] = {}
        self._events: dict[str, Routing] = {}
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)

    def apply(self, routing: Routing) -> None:
        router = router_of(routing)
        for listener in self.listeners:
            listener(routing.model, router)
        with self.changed:
            self._routers[routing.model] = router
            self._events[routing.model] = routing
            self.changed.notify_all()

    def router(self, model: str) -> WeightedRouter | None:
        return self._routers.get(model)

    def event(self, model: str) -> Routing | None:
        return self._events.get(model)

    def models(self) -> dict[str, Routing]:
        return dict(self._events)

    def wait_for(self, model: str, check: Callable[[Routing], bool], timeout_s: float) -> bool:
        """Wait until the model's routing satisfies ``check`` (tests, the CLI's confirmation)."""
        with self.changed:
            return self.changed.wait_for(
                lambda: (e := self._events.get(model)) is not None and check(e), timeout_s
            )


def follow_routing(
    settings: HeadwaterSettings,
    table: RoutingTable,
    *,
    deadletters: EventBus | None = None,
    wait_s: float | None = None,
) -> TopicFollower[Routing]:
    """Keep ``table`` current from the ``routing`` topic on a background thread."""
    follower = TopicFollower(
        settings,
        "routing",
        Routing,
        lambda event, _partition, _offset: table.apply(event),
        deadletters=deadletters,
    )
    return follower.start(wait_s)


def routing_event(
    model: str,
    weights: Mapping[int, float],
    shadows: Sequence[int] = (),
    *,
    reason: str = "",
    actor: str = "",
) -> Routing:
    """A validated routing change (the weights must make a router)."""
    router = WeightedRouter(weights, shadows)
    return Routing(
        model=model,
        weights={str(v): w for v, w in router.weights.items()},
        shadows=list(router.shadows),
        reason=reason,
        actor=actor,
        updated_at_ms=int(time.time() * 1000),
    )


def publish_routing(bus: EventBus, routing: Routing) -> None:
    """Send a routing change to the compacted ``routing`` topic and wait for the broker."""
    bus.send("routing", routing)
    bus.flush()
