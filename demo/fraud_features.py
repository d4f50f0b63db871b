"""The feature set the demo's fraud model reads: the card's recent amounts and distance.

``headwater demo`` points ``HEADWATER_FEATURES`` here, as a user names their own feature module.
The stream spans a few hours of event time, so the model reads only the features whose windows
fill within it (day-long windows and the hour of day would drift on their own). Burst features
(time since the last event, 10-minute counts) would catch fraud whatever its pattern; they are
left out so the demo's concept drift has something to break. The full domain's declarations
are in :mod:`headwater.demo.features`.

>>> FEATURE_SET.name, FEATURE_SET.names
('card_fraud', ['amount', 'amount_last_1', 'amount_last_2', 'amount_last_3', 'distance_km'])
"""

from __future__ import annotations

from headwater.demo.features import CONSTRAINTS, MINUTE
from headwater.streams.feature_defs import LastN, LastValue
from headwater.streams.featureset import FeatureSet

FEATURE_SET = FeatureSet(
    name="card_fraud",
    version=1,
    entity_key="card_id",
    event_type="dev.headwater.demo.Transaction",
    grace_ms=5 * MINUTE,
    description="The demo's fraud model: a card's last amounts and the distance from home.",
    features=(LastValue("amount"), LastN("amount", 3), LastValue("distance_km")),
)

__all__ = ["CONSTRAINTS", "FEATURE_SET"]
