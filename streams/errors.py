"""The errors of the stream workers, under the platform's one exception tree.

>>> issubclass(FeatureSetError, StreamsError)
True
"""

from __future__ import annotations

from headwater.core.errors import HeadwaterError


class StreamsError(HeadwaterError):
    """Something the stream workers cannot recover from by themselves."""


class FeatureSetError(StreamsError):
    """A feature-set declaration is invalid or the module named by HEADWATER_FEATURES is wrong."""


class SinkError(StreamsError):
    """The ClickHouse sink cannot map a topic's records to its warehouse table."""
