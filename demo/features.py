"""The demo domain's feature set: card transactions scored for fraud.

Declared once; the online worker and the offline path both compute it from this declaration.

>>> FEATURE_SET.names[:4]
['amount', 'amount_last_1', 'amount_last_2', 'amount_last_3']
"""

from __future__ import annotations

from headwater.streams.anomalies import Constraints, FieldConstraint
from headwater.streams.feature_defs import (
    Count,
    CountDistinct,
    LastN,
    LastValue,
    Max,
    Mean,
    Ratio,
    StdDev,
    Sum,
    TimeSinceLast,
)
from headwater.streams.windows import Window

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000

MERCHANT_CATEGORIES = (
    "grocery",
    "restaurant",
    "fuel",
    "travel",
    "electronics",
    "fashion",
    "entertainment",
    "health",
    "digital_goods",
    "cash",
)
CHANNELS = ("pos", "online", "contactless", "atm")

from headwater.streams.featureset import FeatureSet  # noqa: E402  (after the constants it documents)

FEATURE_SET = FeatureSet(
    name="card_activity",
    version=1,
    entity_key="card_id",
    event_type="dev.headwater.demo.Transaction",
    grace_ms=5 * MINUTE,
    description="Spending velocity and deviation from the card's own habits.",
    features=(
        LastValue("amount"),
        LastN("amount", 3),
        LastValue("distance_km"),
        LastValue("hour_of_day"),
        Count(Window.sliding(10 * MINUTE), name="txn_count_10m"),
        Count(Window.sliding(HOUR), name="txn_count_1h"),
        Count(Window.tumbling(DAY), name="txn_count_today"),
        Count(Window.sliding(HOUR), name="online_count_1h", where=("channel", "online")),
        Sum("amount", Window.sliding(HOUR), name="amount_sum_1h"),
        Max("amount", Window.sliding(HOUR), name="amount_max_1h"),
        Mean("amount", Window.hopping(DAY, HOUR), name="amount_mean_24h"),
        StdDev("amount", Window.hopping(DAY, HOUR), name="amount_std_24h"),
        Max("distance_km", Window.sliding(HOUR), name="distance_max_1h"),
        CountDistinct("merchant_category", Window.sliding(DAY), name="merchants_24h"),
        CountDistinct("country", Window.sliding(DAY), name="countries_24h"),
        TimeSinceLast(),
        Ratio("amount", "amount_mean_24h", name="amount_to_mean_24h"),
    ),
)

CONSTRAINTS = Constraints(
    fields={
        "amount": FieldConstraint(minimum=0.0, maximum=1_000_000.0),
        "distance_km": FieldConstraint(minimum=0.0, maximum=20_040.0),
        "hour_of_day": FieldConstraint(minimum=0, maximum=23),
        "merchant_category": FieldConstraint(categories=frozenset(MERCHANT_CATEGORIES)),
        "channel": FieldConstraint(categories=frozenset(CHANNELS)),
    }
)
