"""Fixtures of the serving tests: isolated topics per test on the session's real broker."""

from __future__ import annotations

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.kafka_clients import ensure_topics


@pytest.fixture
def topics(kafka: HeadwaterSettings, unique: str) -> HeadwaterSettings:
    """Settings whose every topic is this test's own (a fresh prefix), created."""
    isolated = kafka.model_copy(update={"topic_prefix": f"s-{unique}-"})
    ensure_topics(isolated)
    return isolated
