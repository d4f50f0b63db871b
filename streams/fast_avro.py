"""Avro encoding on the hot path: the native codec, or fastavro with its own parsed schemas.

Each schema the worker writes or reads per event is compiled once by ``headwater_native`` (a
Rust extension in ``native/``, built by ``scripts/install.sh``): the same bytes as fastavro at
a fraction of the cost, since fastavro walks the schema's dictionaries on every call (10-20 µs
per record for the feature vector). A schema the native codec does not cover (recursive,
logical types) keeps fastavro, in the form it parses once: the catalogue parses with
``_write_hint=False``, which makes fastavro parse again on every call. Both write the
single-object encoding; with a schema registry :class:`FastAvro` defers to the codec
(Confluent framing).

>>> from headwater.schemas.catalog import SchemaCatalog
>>> codec = AvroCodec(SchemaCatalog.default())
>>> fast = FastAvro(codec)
>>> label = {"request_id": "", "entity_id": "c1", "event_id": "", "label": 1.0,
...          "event_time_ms": 5, "labeled_at_ms": 9}
>>> fast.encode("dev.headwater.Label", label) == codec.encode("dev.headwater.Label", label)
True
>>> fast.decode(fast.encode("dev.headwater.Label", label), "dev.headwater.Label") == label
True
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from headwater.core.errors import SchemaError
from headwater.schemas.avro_plan import NATIVE_BUILT
from headwater.schemas.codec import SINGLE_OBJECT_MAGIC, AvroCodec

if TYPE_CHECKING:
    import headwater_native


@dataclass(frozen=True)
class _Compiled:
    prefix: bytes  # the single-object header: magic and fingerprint
    parsed: Any  # fastavro's parsed form
    native: headwater_native.AvroType | None


class FastAvro:
    """Encodes records of named schemas, and decodes records written with exactly them;
    ``native=False`` keeps fastavro for every schema (the benchmark's plain baseline)."""

    def __init__(self, codec: AvroCodec, native: bool = True) -> None:
        self.codec = codec
        self.native = native and NATIVE_BUILT
        self._schemas: dict[str, _Compiled] = {}

    def _schema(self, name: str) -> _Compiled:
        found = self._schemas.get(name)
        if found is None:
            schema = self.codec.catalog.get(name)
            native = self.codec.native_of(schema) if self.native else None
            prefix = SINGLE_OBJECT_MAGIC + schema.fingerprint
            found = _Compiled(prefix, parse_schema(schema.source), native)
            self._schemas[name] = found
        return found

    def is_native(self, name: str) -> bool:
        """Whether records of ``name`` go through the native codec."""
        return self._schema(name).native is not None

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        if self.codec.registry is not None:
            return self.codec.encode(name, record)
        compiled = self._schema(name)
        try:
            if compiled.native is not None:
                return compiled.native.encode(record, compiled.prefix)
            out = io.BytesIO()
            out.write(compiled.prefix)
            schemaless_writer(out, compiled.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise SchemaError(f"record does not match schema {name}: {error}") from error
        return out.getvalue()

    def decode(self, data: bytes, name: str) -> dict[str, Any]:
        """A record of schema ``name``; other writers (older versions, Confluent framing) are
        resolved by the codec."""
        compiled = self._schema(name)
        prefix = compiled.prefix
        if not data.startswith(prefix):
            return self.codec.decode(data, reader=name)[1]
        try:
            if compiled.native is not None:
                record = compiled.native.decode(data, len(prefix))
            else:
                record = schemaless_reader(io.BytesIO(data[len(prefix) :]), compiled.parsed, None)
        except Exception as error:  # fastavro raises EOFError, ValueError, IndexError…
            raise SchemaError(f"cannot decode a {name} record: {error}") from error
        if not isinstance(record, dict):
            raise SchemaError(f"{name} did not decode to a record")
        return record
