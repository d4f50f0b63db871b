"""Fixtures of the stream tests: isolated topics per test on the session's real broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.kafka_clients import ensure_topics


@pytest.fixture
def isolated(kafka: HeadwaterSettings, unique: str) -> HeadwaterSettings:
    """The test broker with this test's own topics (prefix ``s-<unique>-``)."""
    settings = kafka.model_copy(update={"topic_prefix": f"s-{unique}-"})
    ensure_topics(settings)
    return settings


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
