"""A user's own feature module (HEADWATER_FEATURES=tests.streams.byo.ride_features).

>>> FEATURE_SET.names[:2]
['rides_1h', 'fare_sum_1h']
"""

from __future__ import annotations

from headwater.streams.anomalies import Constraints, FieldConstraint
from headwater.streams.feature_defs import (
    Count,
    CountDistinct,
    LastValue,
    Mean,
    Ratio,
    Sum,
    TimeSinceLast,
)
from headwater.streams.featureset import FeatureSet
from headwater.streams.windows import Window

HOUR = 3_600_000

FEATURE_SET = FeatureSet(
    name="rider_activity",
    version=2,
    entity_key="rider_id",
    event_type="acme.rides.Ride",
    grace_ms=60_000,
    features=(
        Count(Window.sliding(HOUR), name="rides_1h"),
        Sum("fare_eur", Window.sliding(HOUR), name="fare_sum_1h"),
        Mean("minutes", Window.tumbling(24 * HOUR), name="minutes_mean_today"),
        Count(Window.hopping(6 * HOUR, HOUR), name="surge_rides_6h", where=("city", "Paris")),
        CountDistinct("city", Window.sliding(24 * HOUR), name="cities_24h"),
        LastValue("fare_eur", name="fare"),
        TimeSinceLast(name="seconds_since_last_ride"),
        Ratio("fare", "fare_sum_1h", name="fare_share_1h"),
    ),
)

CONSTRAINTS = Constraints(
    fields={
        "fare_eur": FieldConstraint(minimum=0.0, maximum=2_000.0),
        "minutes": FieldConstraint(minimum=0, maximum=24 * 60),
    }
)
