"""Every scoring process follows the compacted ``routing`` topic live, without a restart."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.schemas.models import Routing
from headwater.serving.routing import RoutingTable, follow_routing, publish_routing, routing_event
from tests.conftest import settings_env
from tests.serving.modelkit import register_versions

pytestmark = pytest.mark.integration


def test_cli_route_change_is_picked_up_live(topics: HeadwaterSettings, unique: str) -> None:
    register_versions(topics, "fraud", unique, 5)
    bus = EventBus(topics)
    publish_routing(bus, routing_event("fraud", {3: 1.0}))
    table = RoutingTable()
    follower = follow_routing(topics, table, wait_s=30)
    try:
        router = table.router("fraud")
        assert router is not None and router.weights == {3: 1.0}

        env = settings_env(topics) | {"HEADWATER_TOPIC_PREFIX": topics.topic_prefix}
        command = [sys.executable, "-m", "headwater.cli.main", "models", "route", "fraud"]
        done = subprocess.run(
            [*command, "--weights", "v3=0.9,v4=0.1", "--shadow", "v5", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["weights"] == {"3": 0.9, "4": 0.1}

        assert table.wait_for("fraud", lambda r: r.shadows == [5], timeout_s=30)
        live = table.router("fraud")
        assert live is not None and live.weights == {3: 0.9, 4: 0.1} and live.shadows == (5,)
        assert {live.assign(f"card-{i}").version for i in range(200)} == {3, 4}
    finally:
        follower.stop()


def test_malformed_routing_is_dead_lettered_and_following_goes_on(
    topics: HeadwaterSettings,
) -> None:
    bus = EventBus(topics)
    bus.send_bytes("routing", b"not avro", b"fraud")
    bus.send("routing", Routing(model="fraud", weights={"3": 0.0}, updated_at_ms=1))
    publish_routing(bus, routing_event("fraud", {4: 1.0}))
    table = RoutingTable()
    follower = follow_routing(topics, table, deadletters=bus, wait_s=30)
    try:
        assert table.wait_for("fraud", lambda r: r.weights == {"4": 1.0}, timeout_s=30)
        assert follower.bad_records == 2
    finally:
        follower.stop()


@pytest.mark.parametrize(
    ("weights", "words"),
    [("v3=lots", "v3=lots"), ("v1=1.0", "no registered versions"), ("v1=0", "weight > 0")],
)
def test_bad_cli_routes_exit_nonzero_naming_the_problem(
    topics: HeadwaterSettings, weights: str, words: str
) -> None:
    env = settings_env(topics) | {"HEADWATER_TOPIC_PREFIX": topics.topic_prefix}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "headwater.cli.main",
            "models",
            "route",
            "fraud",
            "--weights",
            weights,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and words in done.stderr, done.stderr
