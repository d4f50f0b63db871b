"""A poison barrage through the real feature worker process on the real broker: every bad
record is dead-lettered with its reason code, every valid one reaches `events` and `features`,
and the worker lives on (issue 15)."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import orjson
import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.schemas.dead_letters import MAX_ORIGINAL_BYTES
from tests.streams.barrage import barrage
from tests.streams.workers import decoded, end_offsets, start_worker, stop_worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOTAL = 5_000


def test_a_poison_barrage_is_dead_lettered_and_the_worker_lives(
    isolated: HeadwaterSettings, tmp_path: Path, unique: str
) -> None:
    # The oversized records fit the broker's 1 MB limit on `events.raw` but not the producer's
    # default, which the worker keeps.
    bus = EventBus(isolated, **{"message.max.bytes": 1_048_000})
    sent = barrage(bus.codec, TOTAL, big=20)
    for key, value, _ in sent.records:
        bus.send_bytes("events.raw", value, key)
    bus.flush()
    bad = sent.bad()
    assert len(bad) + sent.valid == TOTAL and len(bad) >= TOTAL // 4
    assert sum(len(value) >= 900_000 for value, _ in bad) >= 10

    log = tmp_path / "worker.log"
    worker = start_worker(isolated, "headwater.streams.worker", log)
    try:
        wait_until(
            lambda: (
                end_offsets(isolated, "events") + end_offsets(isolated, "deadletter") >= TOTAL
                and end_offsets(isolated, "features") >= sent.valid
            ),
            240,
            "the worker to process the barrage",
            log,
        )
        assert worker.poll() is None, log.read_text(errors="replace")[-3000:]
    finally:
        stop_worker(worker)
    assert worker.returncode == 0, log.read_text(errors="replace")[-3000:]

    # Counts add up exactly: consumed = valid (events and features) + dead-lettered.
    assert end_offsets(isolated, "events.raw") == TOTAL
    assert end_offsets(isolated, "events") == sent.valid
    assert end_offsets(isolated, "features") == sent.valid
    assert end_offsets(isolated, "deadletter") == len(bad)

    # Each bad record got its own reason code: matched by the digest of its original bytes.
    letters = decoded(isolated, "deadletter", f"dl-{unique}")
    found = Counter((d["original_sha256"], d["reason_code"]) for d in letters)
    assert found == Counter((hashlib.sha256(value).hexdigest(), code) for value, code in bad)
    assert len({(d["source_partition"], d["source_offset"]) for d in letters}) == len(bad)
    sizes = {hashlib.sha256(value).hexdigest(): len(value) for value, _ in bad}
    for letter in letters:  # bounded: the excess bytes dropped, the size and digest kept
        assert letter["original_size"] == sizes[letter["original_sha256"]]
        assert len(letter["original_value"]) == min(letter["original_size"], MAX_ORIGINAL_BYTES)
        assert len(letter["reason"]) <= 2100

    valid_ids = {
        orjson.loads(v)["event_id"] if v[:1] == b"{" else bus.codec.decode(v)[1]["event_id"]
        for _, v, code in sent.records
        if not code
    }
    assert {e["event_id"] for e in decoded(isolated, "events", f"ev-{unique}")} == valid_ids
    assert {f["event_id"] for f in decoded(isolated, "features", f"ft-{unique}")} == valid_ids
