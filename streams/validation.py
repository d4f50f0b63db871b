"""Validating application events: raw ``events.raw`` bytes in, a typed ``Event`` or anomalies out.

Pure functions of the bytes, the domain schema and the declared constraints — no Kafka here —
so the same checks run in the ingest worker, in tests with a list of byte strings, and offline.

>>> from headwater.schemas.catalog import SchemaCatalog
>>> from headwater.schemas.codec import AvroCodec
>>> from headwater.schemas.domain import load_domain
>>> codec = AvroCodec(SchemaCatalog.default())
>>> validator = EventValidator(load_domain(codec.catalog), codec)
>>> ok = validator.validate(b'{"event_id": "e1", "card_id": "c1", "event_time_ms": 5, '
...     b'"amount": 9.5, "merchant_category": "food", "country": "NL"}', partition=0, offset=7)
>>> ok["entity_id"], ok["numeric"]["amount"], ok["categorical"]["channel"], ok["source_offset"]
('c1', 9.5, 'pos', 7)
>>> [a.code.value for a in validator.validate(b'{"card_id": 3}', 0, 8)]
['MISSING_FIELD', 'WRONG_TYPE', 'MISSING_FIELD', 'MISSING_FIELD', 'MISSING_FIELD', 'MISSING_FIELD']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

import orjson

from headwater.core.errors import SchemaError
from headwater.schemas.codec import SINGLE_OBJECT_MAGIC, AvroCodec
from headwater.schemas.domain import Domain
from headwater.streams.anomalies import Anomaly, Constraints, FieldConstraint, ReasonCode
from headwater.streams.fast_avro import FastAvro

_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


class EventRecord(TypedDict):
    """The Avro record of ``dev.headwater.Event`` (the hot path skips pydantic)."""

    event_id: str
    entity_id: str
    event_type: str
    event_time_ms: int
    numeric: dict[str, float]
    categorical: dict[str, str]
    source_partition: int
    source_offset: int


@dataclass(frozen=True)
class _FieldPlan:
    name: str
    kind: str  # the Avro base type: int, long, float, double, boolean, string, enum, other
    nullable: bool
    has_default: bool
    default: Any
    symbols: frozenset[str] | None
    constraint: FieldConstraint | None


def _plan(source: dict[str, Any], constraint: FieldConstraint | None) -> _FieldPlan:
    avro_type = source["type"]
    nullable = isinstance(avro_type, list) and "null" in avro_type
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        avro_type = branches[0] if len(branches) == 1 else "other"
    symbols = None
    if isinstance(avro_type, dict):
        inner = avro_type.get("type")
        if inner == "enum":
            symbols = frozenset(avro_type["symbols"])
        # {"type": "double"} is a double; a logical type ({"type": "long", "logicalType":
        # "timestamp-millis"}) decodes to something else (a datetime): not checked as its base.
        plain = inner == "enum" or ("logicalType" not in avro_type and inner in _KIND_CHECKS)
        avro_type = inner if plain else "other"
    kind = avro_type if avro_type in _KIND_CHECKS else "other"
    return _FieldPlan(
        source["name"],
        kind,
        nullable,
        "default" in source,
        source.get("default"),
        symbols,
        constraint,
    )


_Quick = tuple[str, bool, float | None, float | None, frozenset[str] | None]


def _quick(plan: _FieldPlan) -> _Quick:
    """A typed field's checks as plain values: (name, must be finite, minimum, maximum,
    categories). Bounds apply to numbers and categories to text, as in ``FieldConstraint``;
    the Avro type already says which the value is."""
    numeric = plan.kind in ("int", "long", "float", "double")
    textual = plan.kind in ("string", "enum")
    c = plan.constraint
    return (
        plan.name,
        plan.kind in ("float", "double"),
        c.minimum if c and numeric else None,
        c.maximum if c and numeric else None,
        c.categories if c and textual else None,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


def epoch_ms(value: Any, units_per_ms: int = 1) -> int | None:
    """An event time in milliseconds since the epoch: from a count of the field's units (its
    ``Domain.event_time_units_per_ms``), or from the ``datetime`` an Avro decoder makes of a
    timestamp logical type (a local one, without a zone, read as UTC); None for anything else.

    >>> epoch_ms(1_700_000_000_123), epoch_ms(1_700_000_000_123_456, 1_000)
    (1700000000123, 1700000000123)
    >>> epoch_ms(datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC))
    1700000000123
    >>> epoch_ms(datetime(2023, 11, 14, 22, 13, 20, 123000))
    1700000000123
    >>> epoch_ms("1700000000123"), epoch_ms(True), epoch_ms(1.5)
    (None, None, None)
    """
    if _is_int(value):
        return int(value) if units_per_ms == 1 else int(value) // units_per_ms
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (aware - EPOCH) // ONE_MS
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_KIND_CHECKS: dict[str, Callable[[Any], bool]] = {
    "int": _is_int,
    "long": _is_int,
    "float": _is_number,
    "double": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "enum": lambda v: isinstance(v, str),
}


def _check_value(plan: _FieldPlan, value: Any) -> Anomaly | None:
    name = plan.name
    if not _KIND_CHECKS[plan.kind](value):
        return Anomaly(
            ReasonCode.WRONG_TYPE,
            name,
            f"{name}={value!r} is a {type(value).__name__}, the schema says {plan.kind}",
        )
    if plan.kind in _INT_RANGE:
        low, high = _INT_RANGE[plan.kind]
        if not low <= value <= high:
            return Anomaly(ReasonCode.OUT_OF_RANGE, name, f"{name}={value} overflows {plan.kind}")
    elif plan.kind in ("float", "double") and not math.isfinite(value):
        return Anomaly(ReasonCode.NON_FINITE, name, f"{name}={value!r} is not a finite number")
    if plan.symbols is not None and value not in plan.symbols:
        return Anomaly(
            ReasonCode.UNKNOWN_CATEGORY, name, f"{name}={value!r} is not a symbol of the enum"
        )
    return plan.constraint.check(name, value) if plan.constraint else None


class EventValidator:
    """Checks application events of one domain against its schema and declared constraints."""

    def __init__(
        self,
        domain: Domain,
        codec: AvroCodec,
        constraints: Constraints | None = None,
        native: bool = True,
    ) -> None:
        self.domain = domain
        self.codec = codec
        self.constraints = constraints or Constraints()
        declared = self.constraints.fields
        unknown = set(declared) - set(domain.schema.field_names)
        if unknown:
            raise SchemaError(
                f"constraints name fields {sorted(unknown)} that {domain.name} does not have; "
                f"its fields: {domain.schema.field_names}"
            )
        self._plans = [_plan(f, declared.get(f["name"])) for f in domain.schema.source["fields"]]
        # Avro decoding with the domain schema as reader already guarantees presence and types;
        # such records need only what the schema cannot say: finiteness and the constraints.
        self._typed_plans = [
            p for p in self._plans if p.constraint or p.kind in ("float", "double")
        ]
        self._typed_quick = [_quick(p) for p in self._typed_plans]
        self._names = frozenset(domain.schema.field_names)
        self._numeric = domain.numeric_fields
        self._categorical = domain.categorical_fields
        self._fast = FastAvro(codec, native)

    def decode(self, value: bytes | None) -> dict[str, Any] | Anomaly:
        """The record in ``value``: Avro (either framing) or UTF-8 JSON."""
        if not value:
            return Anomaly(ReasonCode.BAD_ENCODING, "", "the record has no value bytes")
        if value[:2] == SINGLE_OBJECT_MAGIC or value[:1] == b"\x00":
            return self._decode_avro(value)
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError as error:
            return Anomaly(
                ReasonCode.BAD_ENCODING, "", f"neither Avro nor valid UTF-8 JSON: {error}"
            )
        if not isinstance(record, dict):
            return Anomaly(
                ReasonCode.NOT_A_RECORD, "", f"expected a JSON object, got {type(record).__name__}"
            )
        return record

    def _decode_avro(self, value: bytes) -> dict[str, Any] | Anomaly:
        if value[:2] == SINGLE_OBJECT_MAGIC:
            writer = self.codec.catalog.writer_of(value[2:10], count=False)
            if writer is not None and writer.name != self.domain.name:
                return Anomaly(
                    ReasonCode.SCHEMA_MISMATCH,
                    "",
                    f"a {writer.name} record where {self.domain.name} was expected",
                )
        try:
            record = self._fast.decode(value, self.domain.name)
        except SchemaError as error:
            text = str(error)
            if "unknown schema" in text or "no schema id" in text or "REGISTRY_URL" in text:
                if "fingerprint" in text:  # single-object: an earlier version of the domain's?
                    text += (
                        f"; if it is an earlier version of {self.domain.name}, list its .avsc "
                        "after the current one in HEADWATER_EVENT_SCHEMA_FILE"
                    )
                return Anomaly(ReasonCode.UNKNOWN_SCHEMA, "", text)
            return Anomaly(ReasonCode.BAD_ENCODING, "", text)
        return record

    def _typed_fine(self, record: dict[str, Any]) -> bool:
        """Whether a typed record passes every check: the usual case, answered without
        building anything (:meth:`check_typed` explains a record that does not)."""
        for name, finite, low, high, categories in self._typed_quick:
            value = record[name]
            if value is None:
                continue
            if finite and not -math.inf < value < math.inf:  # NaN fails both comparisons
                return False
            if low is not None and value < low:
                return False
            if high is not None and value > high:
                return False
            if categories is not None and value not in categories:
                return False
        return True

    def check_typed(self, record: dict[str, Any]) -> list[Anomaly]:
        """Every anomaly of a record decoded from Avro with the domain schema as reader."""
        if self._typed_fine(record):
            return []
        anomalies = []
        for plan in self._typed_plans:
            value = record[plan.name]
            if value is None:
                continue
            if plan.kind in ("float", "double") and not math.isfinite(value):
                anomalies.append(
                    Anomaly(
                        ReasonCode.NON_FINITE,
                        plan.name,
                        f"{plan.name}={value!r} is not a finite number",
                    )
                )
            elif plan.constraint is not None:
                found = plan.constraint.check(plan.name, value)
                if found is not None:
                    anomalies.append(found)
        return anomalies

    def check(self, record: dict[str, Any]) -> list[Anomaly]:
        """Every anomaly of a decoded record; fills defaults in place."""
        anomalies = []
        for plan in self._plans:
            value = record.get(plan.name)
            if value is None:
                if plan.name not in record and plan.has_default:
                    record[plan.name] = plan.default
                elif not plan.nullable:
                    anomalies.append(
                        Anomaly(ReasonCode.MISSING_FIELD, plan.name, f"{plan.name} is required")
                    )
                continue
            if plan.kind != "other":
                found = _check_value(plan, value)
                if found is not None:
                    anomalies.append(found)
        if not self.constraints.allow_unknown_fields and len(record) > len(self._names):
            for name in sorted(set(record) - self._names):
                anomalies.append(
                    Anomaly(
                        ReasonCode.UNKNOWN_FIELD,
                        name,
                        f"{self.domain.name} has no field {name!r}",
                    )
                )
        return anomalies

    def _roles(self, record: dict[str, Any]) -> tuple[list[Anomaly], int]:
        """The anomalies of the record's entity key, event id and event time, and its event
        time in milliseconds since the epoch."""
        domain = self.domain
        anomalies = []
        for role in (domain.entity_key, domain.event_id):
            if str(record[role]) == "":
                anomalies.append(Anomaly(ReasonCode.EMPTY_VALUE, role, f"{role} is empty"))
        time = record[domain.event_time]
        time_ms = epoch_ms(time, domain.event_time_units_per_ms)
        if time_ms is None or time_ms < 0:
            anomalies.append(
                Anomaly(
                    ReasonCode.OUT_OF_RANGE,
                    domain.event_time,
                    f"{domain.event_time}={time!r} is not a time since the epoch",
                )
            )
        return anomalies, time_ms or 0

    def validate(
        self, value: bytes | None, partition: int, offset: int
    ) -> EventRecord | list[Anomaly]:
        """The typed event of one raw record, or every anomaly found in it."""
        record = self.decode(value)
        if isinstance(record, Anomaly):
            return [record]
        typed = value is not None and value[:1] in (b"\xc3", b"\x00")
        anomalies = self.check_typed(record) if typed else self.check(record)
        if anomalies:
            return anomalies
        anomalies, time_ms = self._roles(record)
        if anomalies:
            return anomalies
        domain = self.domain
        return EventRecord(
            event_id=str(record[domain.event_id]),
            entity_id=str(record[domain.entity_key]),
            event_type=domain.name,
            event_time_ms=time_ms,
            numeric={n: float(record[n]) for n in self._numeric if record[n] is not None},
            categorical={c: record[c] for c in self._categorical if record[c] is not None},
            source_partition=partition,
            source_offset=offset,
        )
