"""The anomaly catalogue: why an application event was rejected, with one reason code each.

Modelled on TensorFlow Data Validation's anomaly types: every rejected record gets a code from
:class:`ReasonCode` (what kind of problem) and a sentence (which field, which value, what was
expected). Constraints beyond the Avro schema — ranges and allowed categories — are declared
with :class:`FieldConstraint` in the feature module (``CONSTRAINTS``).

>>> Anomaly(ReasonCode.OUT_OF_RANGE, "amount", "amount=-3.0 is below the minimum 0.0").describe()
'OUT_OF_RANGE amount: amount=-3.0 is below the minimum 0.0'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class ReasonCode(StrEnum):
    """Every reason a record can be rejected for."""

    BAD_ENCODING = "BAD_ENCODING"  # neither Avro nor UTF-8 JSON, or truncated
    UNKNOWN_SCHEMA = "UNKNOWN_SCHEMA"  # Avro with a fingerprint / id nobody knows
    SCHEMA_MISMATCH = "SCHEMA_MISMATCH"  # Avro of another record type
    NOT_A_RECORD = "NOT_A_RECORD"  # JSON that is not an object
    MISSING_FIELD = "MISSING_FIELD"  # a required field is absent or null
    UNKNOWN_FIELD = "UNKNOWN_FIELD"  # a field the schema does not declare
    WRONG_TYPE = "WRONG_TYPE"  # e.g. a string where the schema says double
    EMPTY_VALUE = "EMPTY_VALUE"  # the entity key or event id is empty
    NON_FINITE = "NON_FINITE"  # NaN or infinity in a numeric field
    OUT_OF_RANGE = "OUT_OF_RANGE"  # below a declared minimum or above a maximum
    UNKNOWN_CATEGORY = "UNKNOWN_CATEGORY"  # not one of a field's declared categories
    LATE_EVENT = "LATE_EVENT"  # older than the feature set's grace allows
    FUTURE_EVENT = "FUTURE_EVENT"  # later than now plus HEADWATER_MAX_FUTURE_SKEW_MS
    RECORD_TOO_LARGE = "RECORD_TOO_LARGE"  # over HEADWATER_KAFKA_MAX_RECORD_BYTES
    PRODUCE_REFUSED = "PRODUCE_REFUSED"  # the producer or broker refused its output record
    INVALID_EVENT = "INVALID_EVENT"  # a typed event on `events` that cannot be read
    # The entity's events are on another partition of events.raw: records not keyed by the
    # entity (an entity's state and history live with one partition).
    WRONG_PARTITION = "WRONG_PARTITION"


@dataclass(frozen=True)
class Anomaly:
    """One problem found in one record."""

    code: ReasonCode
    field: str
    reason: str

    def describe(self) -> str:
        return f"{self.code} {self.field}: {self.reason}" if self.field else self.reason


@dataclass(frozen=True)
class FieldConstraint:
    """What a field's values may be, beyond their Avro type.

    >>> FieldConstraint(minimum=0.0).check("amount", -1.0).code
    <ReasonCode.OUT_OF_RANGE: 'OUT_OF_RANGE'>
    >>> FieldConstraint(categories=frozenset({"pos"})).check("channel", "web").code
    <ReasonCode.UNKNOWN_CATEGORY: 'UNKNOWN_CATEGORY'>
    >>> FieldConstraint(minimum=0.0).check("amount", 2.0) is None
    True
    """

    minimum: float | None = None
    maximum: float | None = None
    categories: frozenset[str] | None = None

    def check(self, name: str, value: object) -> Anomaly | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                return Anomaly(
                    ReasonCode.OUT_OF_RANGE, name, f"{name}={value!r} is below {self.minimum!r}"
                )
            if self.maximum is not None and value > self.maximum:
                return Anomaly(
                    ReasonCode.OUT_OF_RANGE, name, f"{name}={value!r} is above {self.maximum!r}"
                )
        if isinstance(value, str) and self.categories is not None and value not in self.categories:
            allowed = ", ".join(sorted(self.categories))
            return Anomaly(
                ReasonCode.UNKNOWN_CATEGORY, name, f"{name}={value!r} is not one of {allowed}"
            )
        return None


@dataclass(frozen=True)
class Constraints:
    """The declared constraints of a domain's fields.

    ``allow_unknown_fields`` lets applications send fields the schema does not declare yet
    (they are dropped); by default such a record is rejected, so a typo never goes unnoticed.
    """

    fields: Mapping[str, FieldConstraint] = field(default_factory=dict)
    allow_unknown_fields: bool = False
