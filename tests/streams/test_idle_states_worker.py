"""The idle TTL in the feature worker on the real broker: an idle entity's state is dropped
with a tombstone on the changelog, a restarted worker does not restore it, a returning entity
starts afresh, and the offline computation agrees with the online one."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus, read_topic
from headwater.infra.kafka_clients import ensure_topics
from headwater.streams.feature_module import load_feature_module
from headwater.streams.lookup import ChangelogReplica
from headwater.streams.offline import offline_features
from headwater.streams.worker import changelog_topic
from tests.streams.poison import transaction
from tests.streams.workers import decoded, end_offsets, start_worker, stop_worker, wait_until

pytestmark = pytest.mark.integration

HOUR = 3_600_000


@pytest.fixture
def one_partition(kafka: HeadwaterSettings, unique: str) -> HeadwaterSettings:
    """This test's own topics, one partition each: every entity shares one event-time clock."""
    settings = kafka.model_copy(update={"topic_prefix": f"idle-{unique}-", "topic_partitions": 1})
    ensure_topics(settings)
    return settings


def test_an_idle_entity_is_tombstoned_and_not_restored(
    one_partition: HeadwaterSettings, tmp_path: Path, unique: str
) -> None:
    settings = one_partition
    fs = load_feature_module(settings.features).feature_set
    bus = EventBus(settings)
    base = int(time.time() * 1000) - 10 * HOUR  # all in the past: no FUTURE_EVENT
    log = tmp_path / "worker.log"
    ttl = {"HEADWATER_ENTITY_IDLE_TTL_MS": str(HOUR)}

    def send(i: int, card: str, t: int) -> None:
        bus.send_raw(transaction(i, card=card, t=t))
        bus.flush()

    def processed(n: int) -> None:
        wait_until(lambda: end_offsets(settings, "features") >= n, 120, f"{n} features", log)

    worker = start_worker(settings, "headwater.streams.worker", log, **ttl)
    try:
        send(0, "card-idle", base)
        send(1, "card-idle", base + 60_000)
        send(2, "card-busy", base + 120_000)
        processed(3)
        time.sleep(3)  # its states acknowledged and offsets committed: eviction may follow
        send(3, "card-busy", base + 2 * HOUR)  # the clock passes card-idle's newest + TTL
        processed(4)
        changelog = changelog_topic(settings, fs)
        unprefixed = settings.model_copy(update={"topic_prefix": ""})

        def tombstoned() -> bool:
            records = read_topic(unprefixed, changelog, group=f"cl-{unique}-{time.time()}")
            return any(r.key == b"card-idle" and r.value == b"" for r in records)

        wait_until(tombstoned, 120, "a tombstone of card-idle on the changelog", log)
    finally:
        stop_worker(worker)

    # Whatever restores from the changelog no longer has it; the busy entity is still there.
    replica = ChangelogReplica(settings, fs)
    try:
        replica.refresh()
        assert replica.state("card-idle") is None
        assert replica.state("card-busy") is not None
    finally:
        replica.close()

    # A restarted worker holds only the busy entity, and the idle one comes back afresh.
    restarted = start_worker(settings, "headwater.streams.worker", log, **ttl)
    try:
        send(4, "card-idle", base + 2 * HOUR + 1000)
        processed(5)
    finally:
        stop_worker(restarted)
    held = re.findall(r"(\d+) entities held", log.read_text())
    assert held[-1] == "1", log.read_text()[-3000:]

    online = {f["event_id"]: f["values"] for f in decoded(settings, "features", f"f-{unique}")}
    back = [e for e in decoded(settings, "events", f"e-{unique}") if e["event_id"] == "tx-4"]
    assert online["tx-4"] == offline_features(fs, back)[0]["values"]  # as if never seen
    assert online["tx-1"]["txn_count_10m"] == 2.0  # before going idle it had history

    # The offline computation with the same TTL agrees event for event; without it, not.
    events = decoded(settings, "events", f"e2-{unique}")
    offline = {r["event_id"]: r["values"] for r in offline_features(fs, events, HOUR)}
    assert offline == online
    never = {r["event_id"]: r["values"] for r in offline_features(fs, events)}
    assert never["tx-4"] != online["tx-4"]
