"""Records of one schema decoded straight into Arrow columns: the sink's batch path.

The native codec (``headwater_native.AvroType.decode_columns``, ``native/src/columns.rs``)
reads a batch of records of one schema into one column per field, in Arrow's memory layout;
here its buffers become Arrow arrays without a Python object per value. Decoding each record
into a dict, pivoting the dicts into columns and converting those to Arrow was three quarters
of the sink's time per row; the insert is what is left.

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
>>> columns = decode_columns(reader, [data, data], 10)
>>> columns is None or columns["entity_id"].to_pylist() == ["c1", "c1"]
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import headwater_native
    import pyarrow  # type: ignore[import-untyped]

# What native/src/columns.rs hands over per column: (kind, length, validity bitmap or None,
# buffers, children).
_Native = tuple[str, int, bytes | None, list[bytes], list[Any]]


def decode_columns(
    reader: headwater_native.AvroType, values: list[bytes], start: int
) -> dict[str, pyarrow.Array] | None:
    """Each field of the records in ``values`` (read from ``start``) as an Arrow array; None
    where the native codec does not cover the schema (or was built before it could), and
    where a record does not decode: the caller then decodes them one by one, which names
    the record that failed."""
    decode = getattr(reader, "decode_columns", None)
    if decode is None or not values:
        return None
    try:
        raw = decode(values, start)
    except ValueError:
        return None
    if raw is None:
        return None
    return {name: arrow_array(column) for name, column in raw}


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
