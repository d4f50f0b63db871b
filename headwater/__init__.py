"""Headwater: an event-driven machine-learning platform on Apache Kafka and ClickHouse.

What an application imports: the :class:`Client` that sends events and labels, reads
predictions and scores over HTTP, and the names a feature module declares its features with.

>>> import headwater
>>> features = headwater.FeatureSet(
...     name="rider_activity",
...     version=1,
...     entity_key="rider_id",
...     event_type="acme.rides.Ride",
...     features=(
...         headwater.Count(headwater.Window.sliding(3_600_000), name="rides_1h"),
...         headwater.Mean("fare_eur", headwater.Window.sliding(3_600_000), name="fare_mean_1h"),
...     ),
... )
>>> features.names
['rides_1h', 'fare_mean_1h']
>>> headwater.Constraints(fields={"fare_eur": headwater.FieldConstraint(minimum=0.0)}).fields
{'fare_eur': FieldConstraint(minimum=0.0, maximum=None, categories=None)}

Every top-level folder of the repository is a subpackage of this one, in layers that import
only downward (``docs/architecture.md``): ``core`` → ``schemas`` → ``infra`` → ``streams``,
``trainers``, ``serving`` → ``loop`` → ``operate`` → this API → ``demo`` → ``cli``.
"""

from __future__ import annotations

from headwater.client import Client, Score
from headwater.core.errors import HeadwaterError
from headwater.core.settings import HeadwaterSettings
from headwater.schemas.models import Label, Prediction
from headwater.streams.anomalies import Constraints, FieldConstraint
from headwater.streams.feature_defs import (
    Count,
    CountDistinct,
    LastN,
    LastValue,
    Max,
    Mean,
    Min,
    Ratio,
    StdDev,
    Sum,
    TimeSinceLast,
)
from headwater.streams.featureset import FeatureSet
from headwater.streams.windows import Window

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Constraints",
    "Count",
    "CountDistinct",
    "FeatureSet",
    "FieldConstraint",
    "HeadwaterError",
    "HeadwaterSettings",
    "Label",
    "LastN",
    "LastValue",
    "Max",
    "Mean",
    "Min",
    "Prediction",
    "Ratio",
    "Score",
    "StdDev",
    "Sum",
    "TimeSinceLast",
    "Window",
    "__version__",
]
