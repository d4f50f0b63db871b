"""The Avro schemas Headwater knows, parsed once, with their CRC-64-AVRO fingerprints.

Platform schemas live in ``schemas/avro/*.avsc``; a user's own event schema is added with
:meth:`SchemaCatalog.add_file` (see "Bring your own events" in the README).

>>> catalog = SchemaCatalog.default()
>>> catalog.get("dev.headwater.Prediction").name
'dev.headwater.Prediction'
>>> len(catalog.get("dev.headwater.Label").fingerprint)
8

The fingerprint is the specification's: CRC-64-AVRO of the parsing canonical form, as the 8
bytes the single-object header carries (little-endian). The specification's vector for
``"null"`` is 7195948357588979594:

>>> crc64_avro('"null"').hex()
'8a8f25cce724dd63'
>>> crc64_avro('"null"') == (7195948357588979594).to_bytes(8, "little")
True
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
from headwater.schemas.legacy_framing import LEGACY_READS

AVRO_DIR = Path(__file__).parent / "avro"
HISTORY_DIR = Path(__file__).parent / "history"


def crc64_avro(canonical: str) -> bytes:
    """The CRC-64-AVRO fingerprint of a parsing canonical form, little-endian (as the
    single-object encoding carries it)."""
    # fastavro returns the hex of the little-endian bytes already: no reversal.
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


@dataclass(frozen=True)
class AvroSchema:
    """One parsed schema: its full name, the parsed form fastavro uses, and its fingerprint."""

    name: str
    source: dict[str, Any] = field(repr=False)
    parsed: Any = field(repr=False)
    fingerprint: bytes = field(repr=False)

    @property
    def legacy_fingerprint(self) -> bytes:
        """The fingerprint in the reversed order Headwater wrote before 0.2 (read-only)."""
        return self.fingerprint[::-1]

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
        return cls(name, source, parsed, crc64_avro(to_parsing_canonical_form(source)))

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
        self._by_legacy: dict[bytes, AvroSchema] = {}
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
        self._by_legacy[schema.legacy_fingerprint] = schema
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
        """The schema of a standard (little-endian) fingerprint."""
        return self._by_fingerprint.get(print_)

    def writer_of(self, print_: bytes, *, count: bool = True) -> AvroSchema | None:
        """The schema of a single-object header's fingerprint: the standard byte order, or for
        this release the old reversed one (counted and logged, see ``legacy_framing``, unless
        ``count`` is false: a caller that only looks before the codec decodes)."""
        found = self._by_fingerprint.get(print_)
        if found is None:
            found = self._by_legacy.get(print_)
            if found is not None and count:
                LEGACY_READS.record(found.name)
        return found

    def names(self) -> list[str]:
        return sorted(self._by_name)


@cache
def _history_schemas() -> tuple[AvroSchema, ...]:
    return tuple(AvroSchema.from_file(path) for path in sorted(HISTORY_DIR.glob("*/v*.avsc")))


@cache
def _platform_schemas() -> tuple[AvroSchema, ...]:
    return tuple(AvroSchema.from_file(path) for path in sorted(AVRO_DIR.glob("*.avsc")))
