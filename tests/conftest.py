"""Session-wide real services: one local Apache Kafka broker and one embedded ClickHouse engine.

The broker runs under a state directory of its own on test ports, so a developer's running
platform is never touched; it starts once per test session and stops at the end.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.core.settings import HeadwaterSettings, settings_environment
from headwater.infra.kafka_clients import ensure_topics
from headwater.infra.local_kafka import LocalKafka
from headwater.infra.migrations import apply_migrations
from headwater.infra.warehouse import ChdbWarehouse

# Several test sessions can run side by side when each sets its own HEADWATER_TEST_PORT_BASE.
_BASE = int(os.environ.get("HEADWATER_TEST_PORT_BASE", "29000"))
TEST_PORTS = {
    "kafka": _BASE + 92,
    "controller": _BASE + 93,
    "warehouse_host": _BASE + 123,
    "metrics": _BASE + 160,  # processes tests start serve /metrics from here upwards
    "http": _BASE + 185,  # the HTTP scoring server `headwater up` starts
}


@pytest.fixture(scope="session")
def test_home() -> Iterator[Path]:
    root = Path(os.environ.get("HEADWATER_TEST_HOME") or tempfile.mkdtemp(prefix="hw-test-"))
    root.mkdir(parents=True, exist_ok=True)
    yield root
    if not os.environ.get("HEADWATER_TEST_HOME"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(test_home: Path) -> HeadwaterSettings:
    """Settings of the test platform: local broker on test ports, state under ``test_home``."""
    return HeadwaterSettings(
        home=test_home,
        kafka_local_port=TEST_PORTS["kafka"],
        kafka_local_controller_port=TEST_PORTS["controller"],
        warehouse_host_port=TEST_PORTS["warehouse_host"],
        metrics_port=TEST_PORTS["metrics"],
        http_port=TEST_PORTS["http"],
        topic_partitions=3,
    )


def settings_env(settings: HeadwaterSettings) -> dict[str, str]:
    """The environment that makes a ``headwater`` subprocess use the test platform."""
    return settings_environment(settings)


@pytest.fixture(scope="session")
def kafka(settings: HeadwaterSettings) -> Iterator[HeadwaterSettings]:
    """The real local Apache Kafka broker with every topic created; yields its settings."""
    broker = LocalKafka(settings)
    broker.start()
    ensure_topics(settings)
    yield settings
    # Producers that tests dropped are destroyed while the broker still answers, not at exit
    # (where librdkafka would log connection failures after the test summary).
    gc.collect()
    broker.stop()


@pytest.fixture(scope="session")
def warehouse(test_home: Path) -> Iterator[ChdbWarehouse]:
    """The embedded ClickHouse engine (chDB), migrated. One per process, as chDB requires."""
    engine = ChdbWarehouse(test_home / "pytest-warehouse", "headwater")
    apply_migrations(engine)
    yield engine
    engine.close()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for consumer groups, ids and topic prefixes."""
    return uuid.uuid4().hex[:10]
