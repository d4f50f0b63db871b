"""An Avro schema as the *plan* the native codec compiles: names resolved, nested tuples.

``headwater_native.AvroType(plan_of(source))`` encodes and decodes exactly as fastavro does,
without fastavro's per-call walk over the schema's dictionaries. What the native codec does not
cover — recursive types, logical types (fastavro converts those to dates and decimals), unknown
names — raises :class:`Unsupported`, and the caller keeps fastavro for that schema.

>>> plan_of({"type": "record", "name": "P", "fields": [
...     {"name": "id", "type": "string"},
...     {"name": "tags", "type": {"type": "map", "values": "double"}, "default": {}},
...     {"name": "note", "type": ["null", "string"], "default": None}]})
('record', [('id', 'string', False, None), ('tags', ('map', 'double'), True, {}), \
('note', ('union', ['null', 'string']), True, None)])
>>> plan_of({"type": "record", "name": "Node", "fields": [{"name": "next", "type": "Node"}]})
Traceback (most recent call last):
...
headwater.schemas.avro_plan.Unsupported: the native codec does not cover type 'Node' ...
"""

from __future__ import annotations

from typing import Any

try:
    import headwater_native

    NATIVE_BUILT = True
except ImportError:  # not built (see scripts/install.sh): fastavro and Python do the work, slower
    NATIVE_BUILT = False

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})

Plan = str | tuple[Any, ...]


class Unsupported(Exception):
    """A schema the native codec does not cover: use fastavro for it."""


def native_type(schema: Any, name: str) -> headwater_native.AvroType | None:
    """The schema compiled by the native codec; None if it is not built or does not cover it."""
    if not NATIVE_BUILT:
        return None
    try:
        return headwater_native.AvroType(plan_of(schema), name)
    except Unsupported:
        return None


def plan_of(schema: Any) -> Plan:
    """The plan of an Avro schema in its JSON form (as ``json.load`` gives it)."""
    return _plan(schema, {}, "")


def _full_name(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _plan(schema: Any, named: dict[str, Plan], namespace: str) -> Plan:
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema
        found = named.get(schema) or named.get(_full_name(schema, namespace))
        if found is None:
            raise Unsupported(
                f"the native codec does not cover type {schema!r} (recursive or unknown)"
            )
        return found
    if isinstance(schema, list):
        return ("union", [_plan(branch, named, namespace) for branch in schema])
    if not isinstance(schema, dict):
        raise Unsupported(f"not an Avro schema: {schema!r}")
    if "logicalType" in schema:
        raise Unsupported(f"logical type {schema['logicalType']!r} (fastavro converts it)")
    kind = schema.get("type")
    if kind in PRIMITIVES:
        return str(kind)
    if kind == "array":
        return ("array", _plan(schema["items"], named, namespace))
    if kind == "map":
        return ("map", _plan(schema["values"], named, namespace))
    if kind not in ("record", "error", "enum", "fixed"):
        return _plan(kind, named, namespace)  # {"type": "SomeNamedType"}
    full = _full_name(str(schema["name"]), str(schema.get("namespace", namespace)))
    inner = full.rsplit(".", 1)[0] if "." in full else ""
    plan: Plan
    if kind == "enum":
        plan = ("enum", [str(s) for s in schema["symbols"]])
    elif kind == "fixed":
        plan = ("fixed", int(schema["size"]))
    else:
        fields = []
        for field in schema["fields"]:
            field_plan = _plan(field["type"], named, inner)
            has_default = "default" in field
            default = _default(field_plan, field.get("default")) if has_default else None
            fields.append((str(field["name"]), field_plan, has_default, default))
        plan = ("record", fields)
    named[full] = plan
    return plan


def _default(plan: Plan, value: Any) -> Any:
    """A field's default as the Python value the codec writes (Avro gives bytes as text)."""
    if plan == "bytes" or (isinstance(plan, tuple) and plan[0] == "fixed"):
        return str(value).encode("latin-1")
    if isinstance(plan, tuple) and plan[0] == "union":
        return _default(plan[1][0], value)  # a union's default is of its first branch
    return value
