"""Consumer lag: how far each consumer group's committed offsets trail the topics' end offsets.

The log lives in Kafka, so lag is sampled from the broker (:func:`sample_lag`) and kept in the
warehouse as snapshots (:func:`record_lag`, table ``consumer_lag``), where the views
``v_consumer_lag`` and ``v_consumer_lag_history`` read it.

>>> LagSample(1, "g", "events", 0, end_offset=10, committed_offset=7).lag
3
>>> LagSample(1, "g", "events", 0, end_offset=10, committed_offset=-1).lag  # nothing committed
10
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields

from confluent_kafka import KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import AdminClient

from headwater.core.errors import BrokerUnavailable
from headwater.core.settings import HeadwaterSettings
from headwater.infra.kafka_clients import topic_states
from headwater.infra.warehouse import Warehouse
from headwater.schemas.topics import TOPICS

# Groups the platform's own tooling opens briefly; they never consume, so their lag is noise.
_TOOL_GROUPS = ("headwater-status", "headwater-bootstrap")


@dataclass(frozen=True)
class LagSample:
    """One group's position on one partition at one moment."""

    observed_at_ms: int
    group_id: str
    topic: str
    partition: int
    end_offset: int
    committed_offset: int

    @property
    def lag(self) -> int:
        start = max(self.committed_offset, 0)
        return max(self.end_offset - start, 0)


def _admin(settings: HeadwaterSettings) -> AdminClient:
    # Warnings and errors only: sampling runs every few seconds, librdkafka's info lines would
    # flood the log of the process that samples.
    return AdminClient({**settings.librdkafka_config(), "log_level": 4})


def _committed(
    admin: AdminClient, settings: HeadwaterSettings, group: str
) -> list[KafkaTopicPartition]:
    from confluent_kafka import ConsumerGroupTopicPartitions

    futures = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=settings.kafka_timeout_s
    )
    result = futures[group].result(timeout=settings.kafka_timeout_s)
    return list(result.topic_partitions or [])


def consumer_groups(settings: HeadwaterSettings) -> dict[str, bool]:
    """The consumer groups the cluster knows, each with whether it has live members; the
    platform's tooling groups are left out."""
    from confluent_kafka import ConsumerGroupState

    admin = _admin(settings)
    try:
        listed = admin.list_consumer_groups(request_timeout=settings.kafka_timeout_s).result(
            timeout=settings.kafka_timeout_s
        )
    except KafkaException as error:
        raise BrokerUnavailable(
            f"listing consumer groups at {settings.bootstrap_servers} failed: {error}"
        ) from None
    idle = (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD)
    return {g.group_id: g.state not in idle for g in listed.valid if g.group_id not in _TOOL_GROUPS}


def platform_topic(settings: HeadwaterSettings, name: str) -> bool:
    """Whether ``name`` is one of this platform's topics: the configured prefix, then a
    DESIGN.md topic, possibly under a run's own prefix (``headwater demo`` uses ``demo-<tag>-``).

    >>> from headwater.core.settings import HeadwaterSettings
    >>> s = HeadwaterSettings(topic_prefix="")
    >>> platform_topic(s, "events"), platform_topic(s, "demo-7-events.raw"), platform_topic(s, "x")
    (True, True, False)
    """
    if not name.startswith(settings.topic_prefix):
        return False
    rest = name.removeprefix(settings.topic_prefix)
    return any(rest == topic or rest.endswith(f"-{topic}") for topic in TOPICS)


def sample_lag(settings: HeadwaterSettings, groups: Iterable[str] | None = None) -> list[LagSample]:
    """Lag of every (or the named) consumer group on the platform's topics it committed on.
    Groups without members and without lag (finished runs) are left out unless named."""
    admin = _admin(settings)
    known = consumer_groups(settings) if groups is None else dict.fromkeys(groups, True)
    committed: dict[str, list[KafkaTopicPartition]] = {}
    for group in sorted(known):
        try:
            partitions = _committed(admin, settings, group)
        except KafkaException as error:
            raise BrokerUnavailable(
                f"reading offsets of consumer group {group!r} at {settings.bootstrap_servers} "
                f"failed: {error}"
            ) from None
        committed[group] = [tp for tp in partitions if platform_topic(settings, tp.topic)]
    wanted = sorted({tp.topic for partitions in committed.values() for tp in partitions})
    ends = {
        (state.name, partition): end
        for state in topic_states(settings, wanted)
        for partition, end in state.end_offsets.items()
    }
    now = int(time.time() * 1000)
    samples = []
    for group, partitions in committed.items():
        found = [
            LagSample(now, group, tp.topic, tp.partition, ends[(tp.topic, tp.partition)], tp.offset)
            for tp in partitions
            if (tp.topic, tp.partition) in ends
        ]
        if known[group] or any(sample.lag for sample in found):
            samples.extend(found)
    return samples


def record_lag(warehouse: Warehouse, samples: list[LagSample]) -> int:
    """Keep a snapshot in the warehouse's ``consumer_lag`` table; returns the rows written."""
    columns = [f.name for f in fields(LagSample)] + ["lag"]
    rows = [[*astuple(s), s.lag] for s in samples]
    return warehouse.insert("consumer_lag", columns, rows)
