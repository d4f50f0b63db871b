"""The demo generator: valid events, labels after their delay, injectable shift and drift."""

from __future__ import annotations

from statistics import mean

from headwater.demo.generator import DemoConfig, DemoStream, TransactionGenerator
from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.codec import AvroCodec
from headwater.schemas.domain import load_domain
from headwater.schemas.models import Label, Transaction
from headwater.streams.feature_module import load_feature_module
from headwater.streams.validation import EventValidator


def _take(config: DemoConfig, n: int) -> list[tuple[Transaction, bool]]:
    generator = iter(TransactionGenerator(config))
    return [(item.transaction, item.fraud) for item in (next(generator) for _ in range(n))]


def test_every_generated_event_passes_validation() -> None:
    codec = AvroCodec(SchemaCatalog.default())
    module = load_feature_module("headwater.demo.features")
    validator = EventValidator(load_domain(codec.catalog), codec, module.constraints)
    config = DemoConfig(seed=1, cards=50, fraud_rate=0.05, shift_at=500, drift_at=1000)
    for i, (tx, _) in enumerate(_take(config, 1500)):
        data = codec.encode(Transaction.SCHEMA, tx.to_avro())
        assert not isinstance(validator.validate(data, 0, i), list), tx


def test_event_times_increase_and_fraud_rate_is_plausible() -> None:
    items = _take(DemoConfig(seed=2, fraud_rate=0.02), 5000)
    times = [tx.event_time_ms for tx, _ in items]
    assert times == sorted(times)
    assert 0.01 < sum(fraud for _, fraud in items) / len(items) < 0.08


def test_distribution_shift_moves_inputs_not_labels() -> None:
    items = _take(DemoConfig(seed=4, fraud_rate=0.0, shift_at=3000), 6000)
    before = [tx for tx, _ in items[:3000]]
    after = [tx for tx, _ in items[3000:]]
    assert mean(t.amount for t in after) > 1.4 * mean(t.amount for t in before)
    online = [sum(t.channel == "online" for t in part) / 3000 for part in (before, after)]
    assert online[1] > online[0] + 0.25


def test_concept_drift_changes_what_fraud_looks_like() -> None:
    items = _take(DemoConfig(seed=5, fraud_rate=0.05, drift_at=3000), 6000)
    old = [tx.amount for tx, fraud in items[:3000] if fraud]
    new = [tx.amount for tx, fraud in items[3000:] if fraud]
    assert min(old) > 20.0 and max(new) <= 4.0


def test_labels_follow_their_transactions_by_the_delay() -> None:
    records = list(DemoStream(DemoConfig(seed=6, cards=30, label_delay_ms=30_000)).records(500))
    seen: dict[str, int] = {}
    clock = 0
    for record in records:
        if isinstance(record, Transaction):
            seen[record.event_id] = record.event_time_ms
            clock = record.event_time_ms
        else:
            assert isinstance(record, Label)
            assert record.labeled_at_ms == seen[record.event_id] + 30_000
            assert record.labeled_at_ms <= max(clock, record.labeled_at_ms)
    assert len(seen) == 500 and len(records) == 1000
