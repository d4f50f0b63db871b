"""Avro encoding of records, in the two wire formats Headwater speaks.

* Without a schema registry: Avro single-object encoding — ``C3 01``, the schema's 8-byte
  CRC-64-AVRO fingerprint (little-endian, as the specification says), then the Avro body.
  Decoders also read the old reversed fingerprint order for one release
  (``schemas/legacy_framing.py``); see ``docs/wire-format.md``.
* With ``HEADWATER_SCHEMA_REGISTRY_URL``: the Confluent wire format — a zero byte, the 4-byte
  big-endian schema id, then the body.

Decoders accept both, whatever the encoder writes. The Avro body is written and read by the
native codec (``native/``, the same bytes as fastavro, several times faster) where it is built
and covers the schema, and by fastavro otherwise and whenever a record is resolved into another
version of its schema.

>>> codec = AvroCodec(SchemaCatalog.default())
>>> label = {"entity_id": "c1", "label": 1.0, "event_time_ms": 5, "labeled_at_ms": 9}
>>> data = codec.encode("dev.headwater.Label", label)
>>> data[:2]
b'\\xc3\\x01'
>>> name, record = codec.decode(data)
>>> name, record["entity_id"], record["request_id"]
('dev.headwater.Label', 'c1', '')
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from fastavro import schemaless_reader, schemaless_writer

from headwater.core.errors import SchemaError
from headwater.core.redaction import redact, redacted_url, url_secrets
from headwater.schemas.avro_plan import native_type
from headwater.schemas.catalog import AvroSchema, SchemaCatalog

if TYPE_CHECKING:
    import headwater_native

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0


class SchemaRegistry(Protocol):
    """What the codec needs of a schema registry: ids for schemas and schemas for ids."""

    def id_for(self, schema: AvroSchema) -> int: ...

    def schema_for(self, schema_id: int) -> dict[str, Any]: ...


class ConfluentSchemaRegistry:
    """A Confluent-compatible schema registry reached with confluent-kafka's client.

    Subjects follow the record-name strategy: one subject per schema full name.
    """

    def __init__(self, url: str) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self._client = SchemaRegistryClient({"url": url})
        self._url = redacted_url(url)  # the only form of the URL any message shows
        self._secrets = url_secrets(url)
        self._ids: dict[str, int] = {}
        self._schemas: dict[int, dict[str, Any]] = {}

    def id_for(self, schema: AvroSchema) -> int:
        if schema.name not in self._ids:
            import json

            from confluent_kafka.schema_registry import Schema

            try:
                self._ids[schema.name] = self._client.register_schema(
                    schema.name, Schema(json.dumps(schema.source), "AVRO")
                )
            except Exception as error:
                message = f"schema registry {self._url} refused schema {schema.name}: {error}"
                raise SchemaError(redact(message, *self._secrets)) from None
        return self._ids[schema.name]

    def schema_for(self, schema_id: int) -> dict[str, Any]:
        if schema_id not in self._schemas:
            import json

            try:
                found = self._client.get_schema(schema_id)
            except Exception as error:
                message = f"schema registry {self._url} has no schema id {schema_id}: {error}"
                raise SchemaError(redact(message, *self._secrets)) from None
            self._schemas[schema_id] = json.loads(found.schema_str or "{}")
        return self._schemas[schema_id]


class AvroCodec:
    """Encodes records of named schemas and decodes bytes in either wire format."""

    def __init__(self, catalog: SchemaCatalog, registry: SchemaRegistry | None = None) -> None:
        self.catalog = catalog
        self.registry = registry
        self._by_registry_id: dict[int, AvroSchema] = {}
        self._native: dict[bytes, headwater_native.AvroType | None] = {}

    def native_of(self, schema: AvroSchema) -> headwater_native.AvroType | None:
        """The schema compiled by the native codec (``native/``), if built and covering it."""
        if schema.fingerprint not in self._native:
            self._native[schema.fingerprint] = native_type(schema.source, schema.name)
        return self._native[schema.fingerprint]

    def encode(self, schema_name: str, record: Mapping[str, Any]) -> bytes:
        schema = self.catalog.get(schema_name)
        if self.registry is not None:
            prefix = struct.pack(">bI", CONFLUENT_MAGIC, self.registry.id_for(schema))
        else:
            prefix = SINGLE_OBJECT_MAGIC + schema.fingerprint
        native = self.native_of(schema)
        try:
            if native is not None:
                return native.encode(record, prefix)
            out = io.BytesIO()
            out.write(prefix)
            schemaless_writer(out, schema.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise SchemaError(f"record does not match schema {schema_name}: {error}") from error
        return out.getvalue()

    def decode(self, data: bytes, reader: str | None = None) -> tuple[str, dict[str, Any]]:
        """Decode either wire format; with ``reader``, resolve into that schema (evolution)."""
        writer = self._writer_schema(data)
        start = 10 if data[:2] == SINGLE_OBJECT_MAGIC else 5
        # Without a reader, an earlier version's record resolves into the current version.
        target = self.catalog.get(reader) if reader else self.catalog.current(writer)
        resolving = target is not None and target is not writer
        native = None if resolving else self.native_of(writer)
        try:
            if native is not None:
                record = native.decode(data, start)
            else:
                body = io.BytesIO(data)
                body.seek(start)
                reader_parsed = target.parsed if resolving and target is not None else None
                record = schemaless_reader(body, writer.parsed, reader_parsed)
        except Exception as error:  # fastavro raises EOFError, ValueError, SchemaResolutionError…
            raise SchemaError(f"cannot decode a {writer.name} record: {error}") from error
        if not isinstance(record, dict):
            raise SchemaError(f"{writer.name} did not decode to a record")
        return (target or writer).name, record

    def _writer_schema(self, data: bytes) -> AvroSchema:
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            found = self.catalog.writer_of(data[2:10])
            if found is None:
                raise SchemaError(
                    f"unknown schema fingerprint {data[2:10].hex()}: the writer's schema is not "
                    "in this catalogue (add its .avsc)"
                )
            return found
        if data[:1] == b"\x00" and len(data) >= 5:
            if self.registry is None:
                raise SchemaError(
                    "record is in Confluent wire format but HEADWATER_SCHEMA_REGISTRY_URL is unset"
                )
            (schema_id,) = struct.unpack(">I", data[1:5])
            if schema_id not in self._by_registry_id:
                found = AvroSchema.from_json(self.registry.schema_for(schema_id))
                self._by_registry_id[schema_id] = (
                    self.catalog.by_fingerprint(found.fingerprint) or found
                )
            return self._by_registry_id[schema_id]
        raise SchemaError(
            "not an Avro record: expected single-object encoding (C3 01) or Confluent framing (00)"
        )
