"""The application's own event type: the schema of ``events.raw`` and how to read it.

A domain schema is an ``.avsc`` whose top-level attributes name its entity key, event-time field
(milliseconds since the epoch) and event id field::

    {"type": "record", "name": "Ride", "namespace": "acme",
     "entity_key": "rider_id", "event_time": "ts_ms", "event_id": "ride_id", "fields": [...]}

>>> domain = Domain.from_schema(SchemaCatalog.default().get("dev.headwater.demo.Transaction"))
>>> domain.entity_key, domain.numeric_fields[:2], domain.categorical_fields
('card_id', ['amount', 'distance_km'], ['merchant_category', 'country', 'channel'])
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from headwater.core.errors import SchemaError
from headwater.schemas.catalog import AvroSchema, SchemaCatalog
from headwater.schemas.compat import backward_problems

DEMO_SCHEMA = "dev.headwater.demo.Transaction"
_NUMERIC = {"int", "long", "float", "double", "boolean"}
# What an event-time field may be, and how many of its units make a millisecond: a plain long of
# milliseconds, or the Avro specification's timestamp logical types (a long counting from the
# epoch; the local ones have no zone and are read as UTC).
EVENT_TIME_UNITS_PER_MS = {
    "long": 1,
    "timestamp-millis": 1,
    "local-timestamp-millis": 1,
    "timestamp-micros": 1_000,
    "local-timestamp-micros": 1_000,
    "timestamp-nanos": 1_000_000,
    "local-timestamp-nanos": 1_000_000,
}


def _base_type(avro_type: object) -> str:
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        return _base_type(branches[0]) if len(branches) == 1 else "union"
    if isinstance(avro_type, dict):
        return str(avro_type.get("logicalType") or avro_type["type"])
    return str(avro_type)


def _event_time_units_per_ms(schema: AvroSchema, name: str) -> int:
    """How many units of the event-time field ``name`` make a millisecond; a field of a type
    that cannot hold a time since the epoch is refused, naming it.

    >>> _event_time_units_per_ms(SchemaCatalog.default().get(DEMO_SCHEMA), "event_time_ms")
    1
    """
    field = next(f for f in schema.source["fields"] if f["name"] == name)
    kind = _base_type(field["type"])
    if kind not in EVENT_TIME_UNITS_PER_MS:
        raise SchemaError(
            f"domain schema {schema.name}'s event_time field {name!r} is "
            f"{json.dumps(field['type'])}: it must be a long of milliseconds since the epoch "
            f"or an Avro timestamp logical type ({', '.join(EVENT_TIME_UNITS_PER_MS)})"
        )
    return EVENT_TIME_UNITS_PER_MS[kind]


@dataclass(frozen=True)
class Domain:
    """One application event type: its schema and the roles of its fields."""

    schema: AvroSchema
    entity_key: str
    event_time: str
    event_id: str
    # Units of the event-time field in a millisecond: 1 for a long of milliseconds or
    # timestamp-millis, 1000 for timestamp-micros (EVENT_TIME_UNITS_PER_MS).
    event_time_units_per_ms: int = 1

    @classmethod
    def from_schema(cls, schema: AvroSchema) -> Domain:
        roles = {}
        for role in ("entity_key", "event_time", "event_id"):
            value = schema.source.get(role)
            if not isinstance(value, str) or value not in schema.field_names:
                raise SchemaError(
                    f"domain schema {schema.name} must name its {role} field with a top-level "
                    f'"{role}" attribute naming one of its fields {schema.field_names}'
                )
            roles[role] = value
        units = _event_time_units_per_ms(schema, roles["event_time"])
        return cls(schema, roles["entity_key"], roles["event_time"], roles["event_id"], units)

    @property
    def name(self) -> str:
        return self.schema.name

    def _fields_of(self, kinds: set[str]) -> list[str]:
        roles = {self.entity_key, self.event_time, self.event_id}
        return [
            f["name"]
            for f in self.schema.source["fields"]
            if f["name"] not in roles and _base_type(f["type"]) in kinds
        ]

    @property
    def numeric_fields(self) -> list[str]:
        return self._fields_of(_NUMERIC)

    @property
    def categorical_fields(self) -> list[str]:
        return self._fields_of({"string", "enum"})


def load_domain(catalog: SchemaCatalog, schema_file: str = "") -> Domain:
    """The configured domain (``HEADWATER_EVENT_SCHEMA_FILE``), added to the catalogue; the demo's
    card transactions when none is configured.

    After the current schema's file the setting may list its earlier versions' files, separated
    by ``os.pathsep`` (``rides.avsc:rides-v1.avsc``): without a schema registry a record names
    its writer's schema only by fingerprint, so the records an application sent before it
    upgraded its schema, still on ``events.raw``, are read (into the current version) only if
    their version is known. Each must be readable by the current one (Avro's backward
    compatibility), or loading fails naming the files."""
    if not schema_file:
        return Domain.from_schema(catalog.get(DEMO_SCHEMA))
    current_file, *earlier_files = schema_file.split(os.pathsep)
    current = catalog.add_file(Path(current_file))
    for earlier_file in earlier_files:
        earlier = AvroSchema.from_file(Path(earlier_file))
        if earlier.name != current.name:
            raise SchemaError(
                f"HEADWATER_EVENT_SCHEMA_FILE: {earlier_file} is {earlier.name}, not an earlier "
                f"version of {current.name} ({current_file})"
            )
        problems = backward_problems(current.source, earlier.source)
        if problems:
            raise SchemaError(
                f"HEADWATER_EVENT_SCHEMA_FILE: {current_file} cannot read the records written "
                f"with {earlier_file}: {'; '.join(problems)}"
            )
        catalog.add_writer(earlier)
    return Domain.from_schema(current)
