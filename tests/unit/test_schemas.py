"""Event contracts: every schema round-trips in both wire formats; history stays compatible."""

from __future__ import annotations

import copy
import json
import struct
from typing import Any

import pytest
from pydantic import BaseModel

from headwater.core.errors import SchemaError
from headwater.schemas.catalog import AVRO_DIR, AvroSchema, SchemaCatalog
from headwater.schemas.codec import AvroCodec
from headwater.schemas.compat import backward_problems, check_all
from headwater.schemas.models import ALL_MODELS, EventModel

SAMPLES: dict[str, dict[str, Any]] = {
    "Transaction": dict(
        event_id="e1",
        card_id="c1",
        event_time_ms=1,
        amount=9.5,
        merchant_category="grocery",
        country="FR",
    ),
    "Event": dict(
        event_id="e1",
        entity_id="c1",
        event_type="t",
        event_time_ms=1,
        numeric={"amount": 1.5},
        categorical={"country": "FR"},
    ),
    "DeadLetter": dict(
        source_topic="events.raw",
        source_partition=0,
        source_offset=3,
        reason_code="MISSING_FIELD",
        reason="amount missing",
        original_value=b"\x00\xffraw",
        failed_at_ms=2,
    ),
    "FeatureVector": dict(
        entity_id="c1",
        feature_set="fs",
        feature_set_version=1,
        event_id="e1",
        event_time_ms=1,
        computed_at_ms=2,
        values={"n": 1.0},
    ),
    "Prediction": dict(
        request_id="r1",
        entity_id="c1",
        model="m",
        version=2,
        route="canary",
        output=0.7,
        features={"a": 1.0},
        event_time_ms=1,
        served_at_ms=2,
        latency_ms=0.5,
        fallback=True,
        fallback_reason="timeout",
    ),
    "Label": dict(request_id="r1", entity_id="c1", label=1.0, event_time_ms=1, labeled_at_ms=2),
    "Metric": dict(
        model="m",
        version=1,
        route="champion",
        metric="accuracy",
        value=0.9,
        window="tumbling:60s",
        window_start_ms=0,
        window_end_ms=60000,
        count=10,
    ),
    "DriftAlarm": dict(
        alarm_id="a1",
        model="m",
        version=1,
        feature="amount",
        kind="data",
        statistic="psi",
        value=0.3,
        threshold=0.2,
        window_size=1000,
        window_start_ms=0,
        window_end_ms=1,
        severity="critical",
        detected_at_ms=2,
    ),
    "RetrainRequest": dict(
        request_id="q1", model="m", reason="drift", alarm_ids=["a1"], requested_at_ms=1, trials=8
    ),
    "Run": dict(
        run_id="run1",
        kind="trial",
        model="m",
        study="s",
        trial_number=3,
        status="completed",
        params={"lr": 0.01, "depth": 3, "act": "relu", "bn": True},
        metrics={"auc": 0.8},
        artifacts={"weights": "ab" * 32},
        event_time_ms=1,
    ),
    "Trial": dict(
        study="s", trial_number=0, model="m", params={"lr": 0.1}, dataset="d", sent_at_ms=1
    ),
    "ModelVersion": dict(
        model="m",
        version=1,
        action="registered",
        run_id="run1",
        artifact_sha256="ab" * 32,
        metrics={"auc": 0.8},
        signature={"inputs": "a,b"},
        event_time_ms=1,
    ),
    "Routing": dict(model="m", weights={"1": 0.9, "2": 0.1}, shadows=[3], updated_at_ms=1),
}


class MemoryRegistry:
    """An in-memory schema registry: the codec's seam, for the Confluent framing in unit tests."""

    def __init__(self) -> None:
        self.schemas: list[dict[str, Any]] = []

    def id_for(self, schema: AvroSchema) -> int:
        if schema.source not in self.schemas:
            self.schemas.append(schema.source)
        return self.schemas.index(schema.source) + 1

    def schema_for(self, schema_id: int) -> dict[str, Any]:
        return self.schemas[schema_id - 1]


def test_every_schema_has_a_model_and_a_sample() -> None:
    catalog = SchemaCatalog.default()
    assert sorted(m.SCHEMA for m in ALL_MODELS) == catalog.names()
    assert sorted(SAMPLES) == sorted(m.__name__ for m in ALL_MODELS)


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_model_fields_are_the_schema_fields(model: type[EventModel]) -> None:
    schema = SchemaCatalog.default().get(model.SCHEMA)
    assert list(model.model_fields) == schema.field_names


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_the_avro_record_is_the_models_dump(model: type[EventModel]) -> None:
    event = model.model_validate(SAMPLES[model.__name__])
    assert event.to_avro() == event.model_dump()
    assert not any(isinstance(value, BaseModel) for value in event.__dict__.values())


@pytest.mark.parametrize("framing", ["single-object", "confluent"])
@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_round_trip(model: type[EventModel], framing: str) -> None:
    registry = MemoryRegistry() if framing == "confluent" else None
    writer = AvroCodec(SchemaCatalog.default(), registry)
    event = model.model_validate(SAMPLES[model.__name__])
    data = writer.encode(model.SCHEMA, event.to_avro())
    assert data[:1] == (b"\x00" if registry else b"\xc3")
    # A decoder that knows the registry reads both framings.
    reader = AvroCodec(SchemaCatalog.default(), registry or MemoryRegistry())
    name, record = reader.decode(data)
    assert name == model.SCHEMA
    assert model.from_avro(record) == event


def test_confluent_framing_without_registry_is_refused() -> None:
    data = AvroCodec(SchemaCatalog.default(), MemoryRegistry()).encode(
        "dev.headwater.Label", SAMPLES["Label"]
    )
    with pytest.raises(SchemaError, match="HEADWATER_SCHEMA_REGISTRY_URL"):
        AvroCodec(SchemaCatalog.default()).decode(data)


@pytest.mark.parametrize(
    "data", [b"", b"{}", b"\xc3\x01" + b"\x00" * 8 + b"x", struct.pack(">bI", 0, 7)]
)
def test_garbage_is_a_schema_error(data: bytes) -> None:
    with pytest.raises(SchemaError):
        AvroCodec(SchemaCatalog.default()).decode(data)


def test_truncated_body_is_a_schema_error() -> None:
    codec = AvroCodec(SchemaCatalog.default())
    data = codec.encode("dev.headwater.Prediction", SAMPLES["Prediction"])
    with pytest.raises(SchemaError, match="Prediction"):
        codec.decode(data[:-5])


def test_record_not_matching_schema_is_refused() -> None:
    with pytest.raises(SchemaError, match="Label"):
        AvroCodec(SchemaCatalog.default()).encode("dev.headwater.Label", {"label": "high"})


def test_committed_history_is_backward_compatible() -> None:
    assert check_all() == []


def _label_schema() -> dict[str, Any]:
    source: dict[str, Any] = json.loads((AVRO_DIR / "label.avsc").read_text())
    return source


def test_compat_refuses_a_field_without_default() -> None:
    new = _label_schema()
    new["fields"].append({"name": "weight", "type": "double"})
    assert backward_problems(new, _label_schema()) == [
        "Label.weight: field added without a default; old records don't have it"
    ]


def test_compat_refuses_a_narrowing_type_change() -> None:
    old, new = _label_schema(), copy.deepcopy(_label_schema())
    next(f for f in new["fields"] if f["name"] == "event_time_ms")["type"] = "int"
    assert backward_problems(new, old) == ["Label.event_time_ms: type long became int"]


def test_compat_accepts_defaults_and_promotions() -> None:
    old, new = _label_schema(), copy.deepcopy(_label_schema())
    new["fields"].append({"name": "weight", "type": "double", "default": 1.0})
    new["fields"] = [f for f in new["fields"] if f["name"] != "event_id"]
    assert backward_problems(new, old) == []


def test_old_records_decode_with_the_new_schema() -> None:
    """Resolution, not just the rules: bytes written with an old schema, read with the new."""
    old_source = _label_schema()
    new_source = copy.deepcopy(old_source)
    new_source["fields"].append({"name": "weight", "type": "double", "default": 1.0})
    old, new = AvroSchema.from_json(old_source), AvroSchema.from_json(new_source)
    catalog = SchemaCatalog([old])
    data = AvroCodec(catalog).encode(old.name, SAMPLES["Label"])
    reader_catalog = SchemaCatalog([old])
    reader_catalog.add(new)  # the new one is now the catalogue's schema of that name
    _, record = AvroCodec(reader_catalog).decode(data, reader=new.name)
    assert record["weight"] == 1.0 and record["entity_id"] == "c1"
