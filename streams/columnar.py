"""Records of one schema decoded straight into Arrow columns: the sink's batch path.

The native codec (``headwater_native.AvroType.decode_columns``, ``native/src/columns.rs``)
reads a batch of records of one schema into one column per field, in Arrow's memory layout;
here its buffers become Arrow arrays without a Python object per value. Decoding each record
into a dict, pivoting the dicts into columns and converting those to Arrow was three quarters
of the sink's time per row; the insert is what is left. A record that does not decode is left
out and named, so one bad record keeps the rest of its batch on this path (it sent the whole
batch record by record, at half the rate).

The columns equal what decoding record by record and
:func:`~headwater.infra.warehouse.arrow_table` give (``tests/unit/test_sink_columnar.py``).
Strings are Arrow ``string`` (``to_pylist`` gives them back as ``str``), bytes ``binary``.

>>> from headwater.schemas.catalog import SchemaCatalog
>>> from headwater.schemas.codec import AvroCodec
>>> codec = AvroCodec(SchemaCatalog.default())
>>> label = {"request_id": "", "entity_id": "c1", "event_id": "", "label": 1.0,
...          "event_time_ms": 5, "labeled_at_ms": 9}
>>> data = codec.encode("dev.headwater.Label", label)
>>> reader = codec.native_of(codec.catalog.get("dev.headwater.Label"))
>>> columns = decode_columns(reader, [data, data[:-3], data], 10)
>>> columns is None or columns.fields["entity_id"].to_pylist() == ["c1", "c1"]
True
>>> columns is None or columns.failures
{1: 'dev.headwater.Label: label: the record ends early (byte 15 of 22)'}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import headwater_native
    import pyarrow  # type: ignore[import-untyped]

# What native/src/columns.rs hands over per column: (kind, length, validity bitmap or None,
# buffers, children).
_Native = tuple[str, int, bytes | None, list[bytes], list[Any]]


@dataclass(frozen=True)
class Columns:
    """The records that decode, as one Arrow array per field, and why each other one does not
    (by its index in the values)."""

    fields: dict[str, pyarrow.Array]
    failures: dict[int, str]


def decode_columns(
    reader: headwater_native.AvroType, values: list[bytes], start: int
) -> Columns | None:
    """Each field of the records in ``values`` (read from ``start``) as an Arrow array, the
    records that do not decode left out and named with the reason; None where the native codec
    does not cover the schema (or was built before it could) or the batch is too large for
    Arrow's 32-bit offsets: the caller then decodes them one by one."""
    decode = getattr(reader, "decode_columns", None)
    if decode is None or not values:
        return None
    try:
        decoded = decode(values, start)
    except ValueError:  # the batch's, not a record's: columns over 2 GiB
        return None
    if not isinstance(decoded, tuple):  # None, or a build from before the failures came back
        return None
    raw, failures = decoded
    return Columns({name: arrow_array(column) for name, column in raw}, dict(failures))


def arrow_array(column: _Native) -> pyarrow.Array:
    """The Arrow array over one column's buffers (no copy)."""
    import pyarrow as pa

    kind, length, validity, buffers, children = column
    bitmap = None if validity is None else pa.py_buffer(validity)
    wrapped = [pa.py_buffer(b) for b in buffers]
    if kind == "list":
        item = arrow_array(children[0])
        return pa.Array.from_buffers(
            pa.list_(item.type), length, [bitmap, *wrapped], children=[item]
        )
    if kind == "map":
        keys, values = arrow_array(children[0]), arrow_array(children[1])
        entries = pa.StructArray.from_arrays(
            [keys, values],
            fields=[pa.field("key", keys.type, nullable=False), pa.field("value", values.type)],
        )
        kind_type = pa.map_(keys.type, values.type)
        return pa.Array.from_buffers(kind_type, length, [bitmap, *wrapped], children=[entries])
    arrow_type = getattr(pa, _SCALARS[kind])()
    return pa.Array.from_buffers(arrow_type, length, [bitmap, *wrapped])


# The Arrow type of each scalar kind (a pyarrow factory's name).
_SCALARS = {
    "long": "int64",
    "double": "float64",
    "bool": "bool_",
    "string": "string",
    "binary": "binary",
}
