"""A user's feature module for the SEA readings (HEADWATER_FEATURES=tests.loop.sea.sea_features).

>>> FEATURE_SET.names
['x1', 'x2', 'x3']
"""

from __future__ import annotations

from headwater.streams.anomalies import Constraints, FieldConstraint
from headwater.streams.feature_defs import LastValue
from headwater.streams.featureset import FeatureSet

FEATURE_SET = FeatureSet(
    name="sea_readings",
    version=1,
    entity_key="sensor_id",
    event_type="acme.sea.Reading",
    grace_ms=3_600_000,
    features=(
        LastValue("x1", name="x1"),
        LastValue("x2", name="x2"),
        LastValue("x3", name="x3"),
    ),
)

CONSTRAINTS = Constraints(
    fields={name: FieldConstraint(minimum=0.0, maximum=10.0) for name in ("x1", "x2", "x3")}
)
