"""The one exception tree of Headwater.

Every error the platform raises on purpose derives from :class:`HeadwaterError`, and its message
names the thing that failed (a setting, a topic, an address, a model version, a file) and says
what to do about it.

>>> issubclass(BrokerUnavailable, HeadwaterError)
True
"""

from __future__ import annotations


class HeadwaterError(Exception):
    """Root of every error Headwater raises on purpose."""


class ConfigError(HeadwaterError):
    """A setting is missing, malformed or out of its accepted values."""


class DependencyMissing(HeadwaterError):
    """A program the platform needs on this machine (Java, Maven) is not installed."""


class PortInUse(HeadwaterError):
    """A port the platform wants to bind is already taken by another process."""


class BrokerUnavailable(HeadwaterError):
    """The Kafka broker cannot be reached or did not answer in time."""


class RecordRefused(HeadwaterError):
    """The broker (or the producer) refused one record, e.g. over its size limit; the other
    records and the connection are fine, so the record goes to ``deadletter``."""


class BrokerStartFailed(HeadwaterError):
    """The local Apache Kafka broker did not start."""


class WarehouseError(HeadwaterError):
    """The ClickHouse engine or server rejected a statement or is unavailable."""


class SchemaError(HeadwaterError):
    """A record does not match its Avro schema, or a schema change is incompatible."""


class UnknownTopic(HeadwaterError):
    """A topic name is not one of the platform's topics."""


class WarehouseRefused(WarehouseError):
    """The warehouse host refused a statement that would reach outside the engine."""


class MigrationError(WarehouseError):
    """A warehouse migration cannot be applied as written (e.g. an applied one was edited)."""


class RecordTooLarge(RecordRefused):
    """A record is larger than the Kafka producer or broker accepts (``message.max.bytes``)."""


class ScoringUnavailable(HeadwaterError):
    """The HTTP scoring server cannot be reached, timed out, or refused a request."""
