"""``headwater models route MODEL --weights v3=0.9,v4=0.1 [--shadow v5]``: publish a routing
change to the compacted ``routing`` topic, which every scoring process follows live."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from headwater.core.settings import HeadwaterSettings, load_settings
from headwater.infra.event_bus import EventBus
from headwater.serving.errors import RoutingError
from headwater.serving.router import parse_version, parse_weights
from headwater.serving.routing import publish_routing, routing_event


def register(subparsers: Any) -> None:
    route = subparsers.add_parser(
        "route",
        help="set a model's traffic weights per version and its shadow versions",
        description="Publish a model's routing: sticky weighted traffic per version, plus shadow "
        "versions that score every request without answering it.",
    )
    route.add_argument("model", metavar="MODEL")
    route.add_argument("--weights", required=True, help="VERSION=WEIGHT pairs, e.g. v3=0.9,v4=0.1")
    route.add_argument(
        "--shadow",
        action="append",
        default=[],
        metavar="VERSION",
        help="a shadow version (repeat, or comma-separate, for several)",
    )
    route.add_argument("--reason", default="", help="why (kept on the routing event)")
    route.add_argument(
        "--unchecked",
        action="store_true",
        help="publish even if a version is not registered (or is archived) in model-versions",
    )
    route.add_argument("--json", action="store_true", help="print the published event as JSON")
    route.set_defaults(handler=_route)


def _route(args: argparse.Namespace) -> int:
    weights = parse_weights(args.weights)
    shadows = [parse_version(v) for text in args.shadow for v in text.split(",") if v.strip()]
    event = routing_event(
        args.model,
        weights,
        shadows,
        reason=args.reason or "headwater models route",
        actor=os.environ.get("USER", "cli"),
    )
    settings = load_settings()
    if not args.unchecked:
        _check_registered(settings, args.model, [*weights, *shadows])
    bus = EventBus(settings)
    publish_routing(bus, event)
    if args.json:
        print(json.dumps(event.to_avro()))
    else:
        split = ", ".join(f"v{v}={w:g}" for v, w in event.weights.items())
        shadow = f"; shadows {', '.join(f'v{s}' for s in event.shadows)}" if event.shadows else ""
        print(f"routing of {event.model}: {split}{shadow}")
    return 0


def _check_registered(settings: HeadwaterSettings, model: str, versions: list[int]) -> None:
    """Refuse to route traffic to a version the registry does not know or has archived."""
    from headwater.trainers.errors import RegistryError
    from headwater.trainers.registry import replay_state

    state = replay_state(settings)
    for version in versions:
        try:
            stage = state.version(model, version).stage
        except RegistryError as error:
            raise RoutingError(f"{error} (--unchecked publishes anyway)") from None
        if stage == "archived":
            raise RoutingError(f"{model}@{version} is archived; it cannot take traffic")
