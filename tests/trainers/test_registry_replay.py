"""The registry on the real broker: commands become events, a new process state is a replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import ensure_topics
from headwater.trainers.errors import IllegalTransition
from headwater.trainers.registry import ModelRegistry, replay_state

pytestmark = pytest.mark.integration


def test_the_registry_is_rebuilt_from_the_topic(
    kafka: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    settings = kafka.model_copy(
        update={"topic_prefix": f"reg-{unique}-", "artifact_store": str(tmp_path)}
    )
    ensure_topics(settings)
    assert replay_state(settings).models() == []
    registry = ModelRegistry.open(settings)
    for weights in (b"one", b"two", b"three"):
        registry.register("fraud", registry.store.put_bytes(weights), run_id="r", actor="test")
    registry.promote("fraud", 1, reason="first", actor="test")
    registry.promote("fraud", 2, reason="better", actor="test")
    registry.archive("fraud", 3, reason="worse offline", actor="test")
    with pytest.raises(IllegalTransition, match="archived"):
        registry.promote("fraud", 3, reason="again", actor="test")
    promoted_at = registry.state.version("fraud", 2).updated_at_ms

    rebuilt = replay_state(settings)
    assert rebuilt.rejected == [] and rebuilt.undecodable == []
    assert rebuilt.versions("fraud") == registry.state.versions("fraud")
    assert rebuilt.champion("fraud") == 2
    assert rebuilt.champion_at("fraud", promoted_at - 1) == 1


def test_garbage_on_the_topic_is_reported_not_folded(kafka: HeadwaterSettings, unique: str) -> None:
    settings = kafka.model_copy(update={"topic_prefix": f"reg-{unique}-"})
    ensure_topics(settings)
    bus = EventBus(settings)
    bus.send_bytes("model-versions", b"not avro", b"k")
    bus.flush()
    state = replay_state(settings)
    assert state.models() == []
    assert len(state.undecodable) == 1
