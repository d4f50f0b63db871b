"""Skew in stream on the demo domain: the offline recomputation of the real feature declarations
against what serving logged; a unit change on the serving path is named within a bound."""

from __future__ import annotations

from headwater.demo.features import FEATURE_SET
from headwater.demo.generator import DemoConfig, TransactionGenerator
from headwater.loop.skew_handler import SkewHandler
from headwater.schemas.models import DriftAlarm, Event, Prediction, Transaction
from headwater.streams.featureset import EntityState

WINDOW = 200
USED = ("amount", "distance_km", "hour_of_day", "txn_count_1h", "amount_sum_1h")


def _event(tx: Transaction, offset: int) -> Event:
    return Event(
        event_id=tx.event_id,
        entity_id=tx.card_id,
        event_type=FEATURE_SET.event_type,
        event_time_ms=tx.event_time_ms,
        numeric=tx.numeric(),
        categorical=tx.categorical(),
        source_partition=0,
        source_offset=offset,
    )


def test_unit_change_on_the_serving_path_is_named_within_two_windows() -> None:
    generator = TransactionGenerator(DemoConfig(seed=5, cards=50))
    serving_state: dict[
        str, EntityState
    ] = {}  # serving's own (online) computation of the same declarations
    handler = SkewHandler(FEATURE_SET, window=WINDOW)
    bug_at = 1_500
    first: int | None = None
    alarms: list[DriftAlarm] = []
    for i in range(3_000):
        tx = generator.next(i).transaction
        event = _event(tx, i)
        state = serving_state.setdefault(tx.card_id, FEATURE_SET.new_state())
        online = state.update(event.event_time_ms, event.numeric, event.categorical, i)
        assert online is not None
        served = {name: online[name] for name in USED}
        if i >= bug_at:
            served["amount"] *= 100.0  # the bug: serving reads cents
        prediction = Prediction(
            request_id=tx.event_id,
            entity_id=tx.card_id,
            model="fraud",
            version=1,
            route="champion",
            output=0.1,
            features=served,
            event_time_ms=tx.event_time_ms,
            served_at_ms=tx.event_time_ms,
            latency_ms=1.0,
        )
        # predictions sometimes arrive before the validated event, sometimes after
        order = [("events", event), ("predictions", prediction)]
        for topic, record in order if i % 2 else order[::-1]:
            out = [e for _, e in handler.handle(topic, record) if isinstance(e, DriftAlarm)]
            alarms += out
            if out and first is None:
                first = i
    assert first is not None and bug_at <= first < bug_at + 2 * WINDOW
    assert {a.feature for a in alarms} == {"amount"}
    assert all(a.kind == "skew" for a in alarms)
    assert handler.counts.paired == 3_000 and handler.counts.evicted == 0
