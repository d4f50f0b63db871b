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

from infra.errors import BrokerUnavailable
from infra.kafka_clients import topic_states
from infra.settings import HeadwaterSettings
from infra.warehouse import Warehouse
from schemas.topics import TOPICS

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


def consumer_groups(settings: HeadwaterSettings) -> list[str]:
    """The consumer groups the cluster knows, the platform's tooling groups left out."""
    admin = _admin(settings)
    try:
        listed = admin.list_consumer_groups(request_timeout=settings.kafka_timeout_s).result(
            timeout=settings.kafka_timeout_s
        )
    except KafkaException as error:
        raise BrokerUnavailable(
            f"listing consumer groups at {settings.bootstrap_servers} failed: {error}"
        ) from None
    return sorted(g.group_id for g in listed.valid if g.group_id not in _TOOL_GROUPS)


def sample_lag(settings: HeadwaterSettings, groups: Iterable[str] | None = None) -> list[LagSample]:
    """Lag of every (or the named) consumer group on every partition of the platform's topics
    that the group has committed on."""
    names = {settings.topic(t) for t in TOPICS}
    ends = {
        (state.name, partition): end
        for state in topic_states(settings, sorted(names))
        for partition, end in state.end_offsets.items()
    }
    now = int(time.time() * 1000)
    samples = []
    admin = _admin(settings)
    for group in consumer_groups(settings) if groups is None else groups:
        try:
            committed = _committed(admin, settings, group)
        except KafkaException as error:
            raise BrokerUnavailable(
                f"reading offsets of consumer group {group!r} at {settings.bootstrap_servers} "
                f"failed: {error}"
            ) from None
        for tp in committed:
            end = ends.get((tp.topic, tp.partition))
            if end is None:
                continue
            samples.append(LagSample(now, group, tp.topic, tp.partition, end, tp.offset))
    return samples


def record_lag(warehouse: Warehouse, samples: list[LagSample]) -> int:
    """Keep a snapshot in the warehouse's ``consumer_lag`` table; returns the rows written."""
    columns = [f.name for f in fields(LagSample)] + ["lag"]
    rows = [[*astuple(s), s.lag] for s in samples]
    return warehouse.insert("consumer_lag", columns, rows)
