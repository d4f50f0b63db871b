"""The Avro schemas Headwater knows, parsed once, with their CRC-64-AVRO fingerprints.

Platform schemas live in ``schemas/avro/*.avsc``; a user's own event schema is added with
:meth:`SchemaCatalog.add_file` (see "Bring your own events" in the README).

>>> catalog = SchemaCatalog.default()
>>> catalog.get("dev.headwater.Prediction").name
'dev.headwater.Prediction'
>>> len(catalog.get("dev.headwater.Label").fingerprint)
8
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from headwater.core.errors import SchemaError

AVRO_DIR = Path(__file__).parent / "avro"
HISTORY_DIR = Path(__file__).parent / "history"


@dataclass(frozen=True)
class AvroSchema:
    """One parsed schema: its full name, the parsed form fastavro uses, and its fingerprint."""

    name: str
    source: dict[str, Any] = field(repr=False)
    parsed: Any = field(repr=False)
    fingerprint: bytes = field(repr=False)

    @property
    def field_names(self) -> list[str]:
        return [f["name"] for f in self.source["fields"]]

    @property
    def canonical(self) -> str:
        return str(to_parsing_canonical_form(self.source))

    @classmethod
    def from_json(cls, source: dict[str, Any]) -> AvroSchema:
        try:
            parsed = fastavro.parse_schema(source)
        except Exception as error:  # fastavro raises several types for bad schemas
            raise SchemaError(f"invalid Avro schema {source.get('name')!r}: {error}") from error
        name = str(source["name"])
        if "." not in name and source.get("namespace"):
            name = f"{source['namespace']}.{name}"
        # The single-object encoding carries the fingerprint little-endian (Avro specification).
        hex_print = fingerprint(to_parsing_canonical_form(source), "CRC-64-AVRO")
        return cls(name, source, parsed, bytes.fromhex(hex_print)[::-1])

    @classmethod
    def from_file(cls, path: Path) -> AvroSchema:
        try:
            source = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise SchemaError(f"cannot read Avro schema file {path}: {error}") from error
        return cls.from_json(source)


class SchemaCatalog:
    """Schemas by full name and by fingerprint."""

    def __init__(self, schemas: list[AvroSchema] | None = None) -> None:
        self._by_name: dict[str, AvroSchema] = {}
        self._by_fingerprint: dict[bytes, AvroSchema] = {}
        for schema in schemas or []:
            self.add(schema)

    @classmethod
    def default(cls) -> SchemaCatalog:
        """A catalogue of the platform's own schemas (a fresh copy, safe to extend)."""
        catalog = cls(list(_platform_schemas()))
        for old in _history_schemas():
            catalog.add_writer(old)
        return catalog

    def add(self, schema: AvroSchema) -> AvroSchema:
        self._by_name[schema.name] = schema
        self._by_fingerprint[schema.fingerprint] = schema
        return schema

    def add_writer(self, schema: AvroSchema) -> None:
        """Know an earlier version of a schema by its fingerprint only: records written with it
        still decode, resolved into the current version (:meth:`current`)."""
        self._by_fingerprint.setdefault(schema.fingerprint, schema)

    def current(self, schema: AvroSchema) -> AvroSchema:
        """The current version of the schema ``schema`` is a version of (itself if current)."""
        return self._by_name.get(schema.name, schema)

    def add_file(self, path: Path) -> AvroSchema:
        return self.add(AvroSchema.from_file(path))

    def get(self, name: str) -> AvroSchema:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name))
            raise SchemaError(f"unknown schema {name!r}; known schemas: {known}") from None

    def by_fingerprint(self, print_: bytes) -> AvroSchema | None:
        return self._by_fingerprint.get(print_)

    def names(self) -> list[str]:
        return sorted(self._by_name)


@cache
def _history_schemas() -> tuple[AvroSchema, ...]:
    return tuple(AvroSchema.from_file(path) for path in sorted(HISTORY_DIR.glob("*/v*.avsc")))


@cache
def _platform_schemas() -> tuple[AvroSchema, ...]:
    return tuple(AvroSchema.from_file(path) for path in sorted(AVRO_DIR.glob("*.avsc")))
