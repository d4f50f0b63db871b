"""Idle entity states without Kafka: the TTL in event time, the sweep, recovery of the clocks
from the changelog, and the offline computation expiring exactly what the worker does."""

from __future__ import annotations

import random

import orjson
import pytest

from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.codec import AvroCodec
from headwater.schemas.domain import load_domain
from headwater.streams.changelog import ChangelogStore
from headwater.streams.feature_module import load_feature_module
from headwater.streams.idle import IdleExpiry
from headwater.streams.offline import offline_features
from headwater.streams.pipeline import BatchOutput, DictStateStore, FeaturePipeline, RawRecord
from tests.streams.poison import transaction

HOUR = 3_600_000
BASE = 1_700_000_000_000


@pytest.fixture(scope="module")
def pipeline() -> FeaturePipeline:
    codec = AvroCodec(SchemaCatalog.default())
    module = load_feature_module("headwater.demo.features")
    return FeaturePipeline(load_domain(codec.catalog), codec, module, topic_prefix="")


def _raw(offset: int, card: str, t: int, partition: int = 0, i: int | None = None) -> RawRecord:
    """An event at ``offset`` (its id and amount from ``i``, by default the offset)."""
    value = orjson.dumps(transaction(offset if i is None else i, card=card, t=t))
    return RawRecord(partition, offset, card.encode(), value)


def _features(pipeline: FeaturePipeline, out: BatchOutput) -> dict[str, dict[str, float]]:
    found = {}
    for record in out.records:
        if record.topic == "features":
            _, value = pipeline.codec.decode(record.value)
            found[value["event_id"]] = value["values"]
    return found


def _alone(pipeline: FeaturePipeline, raw: RawRecord) -> dict[str, float]:
    """The features of an event applied to a fresh state."""
    out = pipeline.process([raw], DictStateStore(), now_ms=BASE)
    return next(iter(_features(pipeline, out).values()))


def test_an_idle_entity_is_swept_and_starts_afresh(pipeline: FeaturePipeline) -> None:
    store = DictStateStore(idle_ttl_ms=HOUR)
    first = pipeline.process(
        [_raw(0, "idle", BASE), _raw(1, "idle", BASE + 1000), _raw(2, "busy", BASE + 2000)],
        store,
        now_ms=BASE,
    )
    assert first.evicted == {} and set(store.states) == {"idle", "busy"}
    # Within the TTL of the partition's clock: nothing goes.
    out = pipeline.process([_raw(3, "busy", BASE + HOUR)], store, now_ms=BASE)
    assert out.evicted == {} and "idle" in store.states
    # The clock passes idle's newest event time plus the TTL: it is swept, with a tombstone due.
    out = pipeline.process([_raw(4, "busy", BASE + 1000 + HOUR + 1)], store, now_ms=BASE)
    assert out.evicted == {"idle": 0}
    assert set(store.states) == {"busy"} and "idle" not in out.changed
    # It comes back: a fresh state (one event in its windows, not three).
    back = _raw(5, "idle", BASE + 2 * HOUR)
    out = pipeline.process([back], store, now_ms=BASE)
    assert _features(pipeline, out)["tx-5"] == _alone(pipeline, back)
    assert store.states["idle"].events == 1


def test_an_idle_state_not_yet_swept_is_not_used(pipeline: FeaturePipeline) -> None:
    """The sweep stops at the first live state; whether a state is idle is still decided by
    the clock when its entity's next event comes, whatever the sweep left in memory."""
    store = DictStateStore(idle_ttl_ms=HOUR)
    batch = [_raw(0, "front", BASE + 10 * HOUR), _raw(1, "idle", BASE), _raw(2, "x", BASE)]
    out = pipeline.process(batch, store, now_ms=BASE)
    assert "idle" in store.states  # behind the live "front", in the order of changes
    back = _raw(3, "idle", BASE + 1000)
    out = pipeline.process([back], store, now_ms=BASE)
    assert _features(pipeline, out)["tx-3"] == _alone(pipeline, back)


def test_a_ttl_of_zero_never_evicts(pipeline: FeaturePipeline) -> None:
    store = DictStateStore(idle_ttl_ms=0)
    batch = [_raw(0, "old", BASE), _raw(1, "new", BASE + 1000 * HOUR)]
    out = pipeline.process(batch, store, now_ms=BASE)
    out = pipeline.process([_raw(2, "old", BASE + 1000 * HOUR)], store, now_ms=BASE)
    assert out.evicted == {} and store.states["old"].events == 2


def test_a_worker_evicts_only_behind_its_committed_offsets(pipeline: FeaturePipeline) -> None:
    """A tombstone written before the entity's events were committed would let a restart
    re-apply them to a fresh state."""
    committed: dict[int, int] = {}
    store = ChangelogStore(pipeline.feature_set, idle=IdleExpiry(HOUR, committed))
    pipeline.process([_raw(0, "idle", BASE), _raw(1, "busy", BASE + 2 * HOUR)], store, BASE)
    out = pipeline.process([_raw(2, "busy", BASE + 3 * HOUR)], store, BASE)
    assert out.evicted == {} and store.get("idle") is not None
    committed[0] = 2
    out = pipeline.process([_raw(3, "busy", BASE + 3 * HOUR)], store, BASE)
    assert out.evicted == {"idle": 0} and store.get("idle") is None


def test_the_clocks_are_recovered_from_the_changelog(pipeline: FeaturePipeline) -> None:
    fs = pipeline.feature_set
    live = DictStateStore(idle_ttl_ms=HOUR)
    batch = [_raw(0, "a", BASE), _raw(1, "b", BASE + HOUR - 10), _raw(2, "c", BASE, partition=1)]
    pipeline.process(batch, live, now_ms=BASE)
    partitions = {"a": 0, "b": 0, "c": 1}
    changelog = [(partitions[e], e.encode(), s.to_bytes()) for e, s in live.states.items()]
    restored = ChangelogStore(fs, idle=IdleExpiry(HOUR))
    assert restored.restore([*changelog, (1, b"c", None)]) == 4
    assert restored.idle.clock == {0: BASE + HOUR - 10, 1: BASE}
    assert len(restored.idle) == 2  # the tombstone took "c" off its clock
    # The recovered clock expires "a" exactly when the uninterrupted store does.
    later = [_raw(3, "b", BASE + HOUR + 5), _raw(4, "a", BASE + HOUR + 6)]
    expected = _features(pipeline, pipeline.process(later, live, now_ms=BASE))
    got = _features(pipeline, pipeline.process(later, restored, now_ms=BASE))
    assert got == expected and got["tx-4"] == _alone(pipeline, later[1])


def test_offline_expires_what_the_worker_does(pipeline: FeaturePipeline) -> None:
    """Random traffic over two partitions, processed online in random batches; the offline
    replay of the applied events gives every event the same values."""
    rng = random.Random(15)
    cards = [f"card-{i}" for i in range(12)]
    t = {0: BASE, 1: BASE}
    offsets = {0: 0, 1: 0}
    raws: list[RawRecord] = []
    for _ in range(600):
        card = rng.choice(cards)
        partition = cards.index(card) % 2
        t[partition] += rng.choice([1000, 60_000, 20 * 60_000, 3 * HOUR])
        jitter = rng.choice([0, 0, 0, -120_000])  # some out of order, within the grace
        i = len(raws)
        raws.append(_raw(offsets[partition], card, t[partition] + jitter, partition, i))
        offsets[partition] += 1
    store = DictStateStore(idle_ttl_ms=2 * HOUR)
    online: dict[str, dict[str, float]] = {}
    evicted = 0
    events: list[dict[str, object]] = []
    start = 0
    while start < len(raws):
        size = rng.randint(1, 40)
        out = pipeline.process(raws[start : start + size], store, now_ms=BASE)
        evicted += len(out.evicted)
        online.update(_features(pipeline, out))
        for record in out.records:
            if record.topic == "events":
                _, event = pipeline.codec.decode(record.value)
                events.append(event)
        start += size
    assert evicted > 0  # the TTL did something
    offline = {
        row["event_id"]: row["values"]
        for row in offline_features(pipeline.feature_set, events, idle_ttl_ms=2 * HOUR)
    }
    assert offline == online
    without_ttl = {
        r["event_id"]: r["values"] for r in offline_features(pipeline.feature_set, events)
    }
    assert without_ttl != online  # and the test can tell
