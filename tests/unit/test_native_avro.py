"""The native Avro codec writes exactly fastavro's bytes and reads them back the same, for every
schema the platform has (and one that uses every Avro type); bad records and bad bytes fail
with the field's name."""

from __future__ import annotations

import io
import json
import random
import string
from typing import Any

import fastavro
import pytest

from headwater.core.errors import SchemaError
from headwater.schemas.avro_plan import NATIVE_BUILT, Plan, Unsupported, plan_of
from headwater.schemas.catalog import AVRO_DIR, SchemaCatalog
from headwater.schemas.codec import AvroCodec
from headwater.streams.fast_avro import FastAvro

if not NATIVE_BUILT:  # a failure, not a skip: the worker would silently run several times slower
    raise RuntimeError("headwater_native is not built: run scripts/install.sh")

import headwater_native

EVERY_TYPE = {
    "type": "record",
    "name": "Everything",
    "namespace": "test.native",
    "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "single", "type": "float"},
        {"name": "double", "type": "double"},
        {"name": "blob", "type": "bytes"},
        {"name": "text", "type": "string"},
        {"name": "nothing", "type": "null"},
        {"name": "suit", "type": {"type": "enum", "name": "Suit", "symbols": ["H", "S", "D"]}},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {"name": "suits", "type": {"type": "array", "items": "Suit"}},
        {"name": "by_name", "type": {"type": "map", "values": {"type": "array", "items": "long"}}},
        {"name": "maybe", "type": ["null", "string"], "default": None},
        {"name": "either", "type": ["null", "long", "double", "string", "Digest"]},
        {
            "name": "inner",
            "type": {
                "type": "record",
                "name": "Inner",
                "fields": [{"name": "x", "type": "double"}, {"name": "tag", "type": "Suit"}],
            },
        },
        {"name": "inners", "type": {"type": "array", "items": "Inner"}},
        {"name": "with_default", "type": "string", "default": "dflt"},
    ],
}


def _schemas() -> list[tuple[str, dict[str, Any]]]:
    catalog = SchemaCatalog.default()
    found = [(name, catalog.get(name).source) for name in catalog.names()]
    history = sorted((AVRO_DIR.parent / "history").glob("*/*.avsc"))
    found += [(str(p.relative_to(AVRO_DIR.parent)), json.loads(p.read_text())) for p in history]
    return [*found, ("every type", EVERY_TYPE)]


TEXT = string.printable + "éλ€😀"


def _random_primitive(name: str, rng: random.Random) -> Any:
    if name == "boolean":
        return rng.random() < 0.5
    if name == "int":
        return rng.choice([0, -1, 1, 63, -64, 64, 2**31 - 1, -(2**31)])
    if name == "long":
        return rng.choice([0, -1, 2**63 - 1, -(2**63), rng.randint(-(2**50), 2**50)])
    if name == "float":
        return rng.randint(-4096, 4096) / 8
    if name == "double":
        return rng.choice([0.0, -0.0, 1e300, -5e-324, rng.uniform(-1e6, 1e6)])
    if name == "bytes":
        return rng.randbytes(rng.randint(0, 70))
    if name == "string":
        return "".join(rng.choices(TEXT, k=rng.randint(0, 70)))
    return None


def _random(plan: Plan, rng: random.Random, depth: int = 0) -> Any:
    """A random datum of ``plan`` (floats that a 32-bit float holds exactly)."""
    if isinstance(plan, str):
        return _random_primitive(plan, rng)
    kind = plan[0]
    if kind == "enum":
        return rng.choice(plan[1])
    if kind == "fixed":
        return rng.randbytes(plan[1])
    if kind == "array":
        return [_random(plan[1], rng, depth + 1) for _ in range(rng.randint(0, 3 if depth else 70))]
    if kind == "map":
        size = rng.randint(0, 3 if depth else 70)
        return {f"k{i}-{rng.random()}": _random(plan[1], rng, depth + 1) for i in range(size)}
    if kind == "union":
        branch = rng.choice(plan[1])
        value = _random(branch, rng, depth + 1)
        return float(value) if branch == "double" else value
    return {name: _random(field, rng, depth + 1) for name, field, _, _ in plan[1]}


def _fastavro_bytes(source: dict[str, Any], datum: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(source), datum)
    return out.getvalue()


@pytest.mark.parametrize(("name", "source"), _schemas(), ids=[n for n, _ in _schemas()])
def test_native_bytes_equal_fastavros_both_ways(name: str, source: dict[str, Any]) -> None:
    plan = plan_of(source)
    native = headwater_native.AvroType(plan, name)
    parsed = fastavro.parse_schema(source)
    rng = random.Random(name)
    for _ in range(200):
        datum = _random(plan, rng)
        expected = _fastavro_bytes(source, datum)
        assert native.encode(datum) == expected, datum
        read_back = fastavro.schemaless_reader(io.BytesIO(expected), parsed, None)
        assert native.decode(expected) == read_back
        assert native.decode(b"xyz" + expected, 3) == read_back


def test_defaults_fill_missing_fields_as_fastavro_does() -> None:
    source = {
        "type": "record",
        "name": "D",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "n", "type": "long", "default": -1},
            {"name": "m", "type": {"type": "map", "values": "double"}, "default": {}},
            {"name": "u", "type": ["null", "string"], "default": None},
        ],
    }
    native = headwater_native.AvroType(plan_of(source), "D")
    assert native.encode({"id": "x"}) == _fastavro_bytes(source, {"id": "x"})
    # Avro gives a bytes default as text, one code point per byte (fastavro would fail on it).
    blob = {
        "type": "record",
        "name": "B",
        "fields": [{"name": "b", "type": "bytes", "default": "\u00ff"}],
    }
    assert headwater_native.AvroType(plan_of(blob), "B").encode({}) == b"\x02\xff"


def _everything() -> dict[str, Any]:
    return dict(_random(plan_of(EVERY_TYPE), random.Random(3)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"small": 2**31}, "small: 2147483648 does not fit a 32-bit int"),
        ({"big": 2**64}, "big: does not fit a 64-bit long"),
        ({"double": "1.5"}, "double: expected a float, got str"),
        ({"big": 1.5}, "big: expected an int, got float"),
        ({"text": b"bytes"}, "text: expected a str, got bytes"),
        ({"suit": "Z"}, 'suit: "Z" is not a symbol of the enum'),
        ({"digest": b"12345"}, "digest: 5 bytes for a fixed of 4"),
        ({"by_name": {"a": [1, "2"]}}, "by_name.a.1: expected an int, got str"),
        ({"by_name": {3: []}}, "by_name: a key is a int, not a str"),
        ({"inners": [{"x": 1.0}]}, "inners.0.tag: missing, and the schema gives no default"),
        ({"either": [1]}, "either: a list matches no branch of the union"),
        ({"flag": 1}, "flag: expected a bool, got int"),
    ],
)
def test_a_record_that_does_not_match_names_the_field(change: dict[str, Any], message: str) -> None:
    native = headwater_native.AvroType(plan_of(EVERY_TYPE), "test.native.Everything")
    with pytest.raises(ValueError, match=r"test\.native\.Everything: ") as raised:
        native.encode({**_everything(), **change})
    assert message in str(raised.value)


def test_bad_bytes_fail_with_where_they_went_wrong() -> None:
    native = headwater_native.AvroType(plan_of(EVERY_TYPE), "E")
    good = native.encode(_everything())
    for data, message in [
        (good[:-1], "ends early"),
        (good + b"\x00", "1 byte(s) left after the record"),
        (b"\x02", "flag: 2 is not a boolean"),
        (b"\x01" + b"\xff" * 11, "small: a varint longer than 10 bytes"),
        (b"", "flag: the record ends early (byte 0 of 0)"),
    ]:
        with pytest.raises(ValueError, match="E: ") as raised:
            native.decode(data)
        assert message in str(raised.value)
    text = headwater_native.AvroType("string", "S")
    with pytest.raises(ValueError, match="invalid UTF-8"):
        text.decode(b"\x04\xff\xfe")
    with pytest.raises(ValueError, match="negative length"):
        text.decode(b"\x03")
    many = headwater_native.AvroType(("array", "long"), "A")
    with pytest.raises(ValueError, match="a block of 1000000 items in 1 bytes"):
        many.decode(b"\x80\x89\x7a\x00")


def test_what_the_native_codec_does_not_cover_stays_with_fastavro() -> None:
    recursive = {
        "type": "record",
        "name": "Node",
        "fields": [{"name": "next", "type": ["null", "Node"]}],
    }
    with pytest.raises(Unsupported, match="'Node'"):
        plan_of(recursive)
    dated = {
        "type": "record",
        "name": "T",
        "fields": [{"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}],
    }
    with pytest.raises(Unsupported, match="timestamp-millis"):
        plan_of(dated)


def test_fast_avro_uses_the_native_codec_for_the_hot_path_schemas() -> None:
    codec = AvroCodec(SchemaCatalog.default())
    fast = FastAvro(codec)
    for name in ("dev.headwater.Event", "dev.headwater.FeatureVector", "dev.headwater.Prediction"):
        assert fast.is_native(name), name
    assert not FastAvro(codec, native=False).is_native("dev.headwater.Event")
    label = {
        "request_id": "r",
        "entity_id": "c1",
        "event_id": "e",
        "label": 1.0,
        "event_time_ms": 5,
        "labeled_at_ms": 9,
    }
    assert fast.encode("dev.headwater.Label", label) == codec.encode("dev.headwater.Label", label)
    with pytest.raises(SchemaError, match=r"dev\.headwater\.Label: label: expected a float"):
        fast.encode("dev.headwater.Label", {**label, "label": "yes"})
    with pytest.raises(SchemaError, match="ends early"):
        fast.decode(fast.encode("dev.headwater.Label", label)[:-1], "dev.headwater.Label")


def test_history_schemas_are_among_those_checked() -> None:
    assert sum("history" in name for name, _ in _schemas()) >= 10
