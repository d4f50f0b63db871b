"""The worker's per-batch logic without Kafka: routing, lateness, redelivery, broken features."""

from __future__ import annotations

import orjson

from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.codec import AvroCodec
from headwater.schemas.domain import load_domain
from headwater.streams.anomalies import Constraints
from headwater.streams.feature_defs import Count, Feature, HistoryView
from headwater.streams.feature_module import FeatureModule
from headwater.streams.featureset import FeatureSet
from headwater.streams.pipeline import DictStateStore, FeaturePipeline, RawRecord
from headwater.streams.windows import Window
from tests.streams.poison import transaction


class ExplodesOnBigAmounts(Feature):
    """A user feature with a bug: it fails on amounts over 1000."""

    def names(self) -> list[str]:
        return ["fragile"]

    def reads(self) -> tuple[str, ...]:
        return ("amount",)

    def compute(self, view: HistoryView) -> list[float]:
        amount = view.columns["amount"][view.high - 1]
        assert isinstance(amount, float)
        if amount > 1000:
            raise ZeroDivisionError("fragile feature")
        return [amount]


def _pipeline(codec: AvroCodec) -> FeaturePipeline:
    fs = FeatureSet(
        "t",
        1,
        "card_id",
        "dev.headwater.demo.Transaction",
        (Count(Window.sliding(60_000), name="n"), ExplodesOnBigAmounts()),
        grace_ms=10_000,
    )
    return FeaturePipeline(
        load_domain(codec.catalog), codec, FeatureModule("t", fs, Constraints()), "p-"
    )


def _raw(offset: int, **fields: object) -> RawRecord:
    record = transaction(offset, **fields)  # type: ignore[arg-type]
    return RawRecord(0, offset, b"card-1", orjson.dumps(record))


def _codes(codec: AvroCodec, pipeline: FeaturePipeline, batch: list[RawRecord]) -> list[str]:
    out = pipeline.process(batch, DictStateStore(), now_ms=0)
    codes = []
    for record in out.records:
        _, value = codec.decode(record.value)
        codes.append(value.get("reason_code", record.topic))
    return codes


def test_late_broken_and_valid_records_are_routed() -> None:
    codec = AvroCodec(SchemaCatalog.default())
    pipeline = _pipeline(codec)
    batch = [
        _raw(0, t=100_000),
        _raw(1, t=95_000),  # 5 s late: within the grace
        _raw(2, t=80_000),  # 20 s late: beyond it
        _raw(3, t=101_000, amount=5000.0),  # breaks the fragile feature
        _raw(4, t=102_000),
    ]
    assert _codes(codec, pipeline, batch) == [
        "events",
        "features",
        "events",
        "features",
        "LATE_EVENT",
        "INVALID_EVENT",
        "events",
        "features",
    ]


def test_redelivered_records_are_skipped_once_applied() -> None:
    codec = AvroCodec(SchemaCatalog.default())
    pipeline = _pipeline(codec)
    store = DictStateStore()
    first = pipeline.process([_raw(0, t=1_000), _raw(1, t=2_000)], store, now_ms=0)
    again = pipeline.process([_raw(1, t=2_000), _raw(2, t=3_000)], store, now_ms=0)
    assert (first.valid, again.valid, again.skipped) == (2, 1, 1)
    assert first.changed == {"card-1": 0}


def test_an_entitys_event_on_another_partition_is_dead_lettered_not_skipped() -> None:
    """A producer that does not key events.raw by the entity spreads its events over the
    partitions. Offsets of two partitions do not compare: the later event, at a lower offset
    of its own partition, passed for one applied before a restart and was silently skipped."""
    codec = AvroCodec(SchemaCatalog.default())
    pipeline = _pipeline(codec)
    store = DictStateStore()
    first = pipeline.process([_raw(10, t=1_000)], store, now_ms=0)
    unkeyed = RawRecord(1, 3, None, orjson.dumps(transaction(3, t=2_000)))
    elsewhere = pipeline.process([unkeyed], store, now_ms=0)
    assert (first.valid, elsewhere.valid, elsewhere.skipped, elsewhere.rejected) == (1, 0, 0, 1)
    _, letter = codec.decode(elsewhere.records[0].value)
    assert letter["reason_code"] == "WRONG_PARTITION"
    assert (
        "partition 0" in letter["reason"]
        and "key p-events.raw records by card_id" in (letter["reason"])
    )
    assert letter["original_value"] == unkeyed.value  # nothing lost: it can be sent again
    # Another entity may start on that partition.
    other = RawRecord(1, 4, b"card-2", orjson.dumps(transaction(4, card="card-2", t=2_000)))
    assert pipeline.process([other], store, now_ms=0).valid == 1
