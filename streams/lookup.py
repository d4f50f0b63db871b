"""Online feature lookup: an entity's current feature vector, its event time and freshness.

The online store is the feature worker's Faust table. Other processes (HTTP scoring) read it
through :class:`ChangelogReplica`, a read replica that follows the table's changelog topic —
the same mechanism Faust uses for standby replicas — and answers lookups from memory.

>>> from headwater.streams.feature_module import load_feature_module
>>> fs = load_feature_module("headwater.demo.features").feature_set
>>> state = fs.new_state()
>>> _ = state.update(60_000, {"amount": 12.0}, {"channel": "pos"}, offset=0)
>>> found = lookup_state(fs, "card-1", state, now_ms=90_000)
>>> found.values["amount"], found.event_time_ms, found.freshness_ms
(12.0, 60000, 30000)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from headwater.core.errors import BrokerUnavailable
from headwater.core.settings import HeadwaterSettings
from headwater.infra.kafka_clients import cluster_metadata, make_consumer
from headwater.streams.changelog import ChangelogStore, catch_up, read_from_beginning
from headwater.streams.featureset import EntityState, FeatureSet
from headwater.streams.worker import changelog_topic


@dataclass(frozen=True)
class OnlineFeatures:
    """An entity's feature values as of its newest event."""

    entity_id: str
    feature_set: str
    feature_set_version: int
    values: dict[str, float]
    event_time_ms: int
    freshness_ms: int
    events: int


def lookup_state(
    feature_set: FeatureSet, entity_id: str, state: EntityState, now_ms: int | None = None
) -> OnlineFeatures:
    """The current vector of one entity's state (values at its newest event time)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    newest = state.newest_time_ms
    return OnlineFeatures(
        entity_id,
        feature_set.name,
        feature_set.version,
        state.read(newest),
        newest,
        now - newest,
        state.events,
    )


class ChangelogReplica:
    """A read replica of the feature worker's table, following its changelog topic."""

    def __init__(self, settings: HeadwaterSettings, feature_set: FeatureSet) -> None:
        self.feature_set = feature_set
        self.topic = changelog_topic(settings, feature_set)
        self._store = ChangelogStore(feature_set)
        self._consumer = make_consumer(settings, f"{self.topic}-replica")
        metadata = cluster_metadata(settings).topics.get(self.topic)
        if metadata is None:
            raise BrokerUnavailable(
                f"changelog topic {self.topic} does not exist yet: has the feature worker "
                "(python -m headwater.streams.worker) run?"
            )
        self._partitions = sorted(metadata.partitions)
        self._following = False  # assigned by the first refresh
        self._timeout_s = settings.kafka_timeout_s

    def refresh(self) -> int:
        """Apply every changelog record written before this call (after the first, up to the
        ends the replica's own fetches last saw: asking the broker for them waited behind those
        fetches, 1.2 s a refresh over 3 partitions, so an HTTP score from online features
        took 1.3 s); returns how many."""
        timeout = self._timeout_s * 3
        if not self._following:
            self._following = True
            return self._store.restore(
                read_from_beginning(self._consumer, self.topic, self._partitions, timeout)
            )
        records = catch_up(self._consumer, self.topic, self._partitions, timeout, cached=True)
        return self._store.restore(records)

    def state(self, entity_id: str) -> EntityState | None:
        return self._store.get(entity_id)

    def lookup(self, entity_id: str, now_ms: int | None = None) -> OnlineFeatures | None:
        """The entity's current feature vector, or None for an entity never seen."""
        state = self.state(entity_id)
        return None if state is None else lookup_state(self.feature_set, entity_id, state, now_ms)

    def close(self) -> None:
        self._consumer.close()
