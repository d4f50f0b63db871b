"""The anomaly catalogue on lists of bytes: every reason code, no Kafka."""

from __future__ import annotations

import orjson
import pytest

from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.codec import AvroCodec
from headwater.schemas.domain import load_domain
from headwater.streams.anomalies import Constraints, ReasonCode
from headwater.streams.feature_module import load_feature_module
from headwater.streams.validation import EventValidator
from tests.streams.poison import TRANSACTION, poison_records, transaction


@pytest.fixture
def codec() -> AvroCodec:
    return AvroCodec(SchemaCatalog.default())


@pytest.fixture
def validator(codec: AvroCodec) -> EventValidator:
    module = load_feature_module("headwater.demo.features")
    return EventValidator(load_domain(codec.catalog), codec, module.constraints)


def test_every_poison_record_gets_its_reason_code(
    codec: AvroCodec, validator: EventValidator
) -> None:
    for value, code in poison_records(codec):
        result = validator.validate(value, 0, 1)
        assert isinstance(result, list), value
        assert result[0].code == ReasonCode(code), (value, result)


def test_avro_and_json_of_the_same_event_agree(codec: AvroCodec, validator: EventValidator) -> None:
    record = transaction(3, channel="online")
    from_avro = validator.validate(codec.encode(TRANSACTION, record), 2, 9)
    from_json = validator.validate(orjson.dumps(record), 2, 9)
    assert from_avro == from_json
    assert not isinstance(from_avro, list)
    assert from_avro["numeric"] == {"amount": 13.0, "distance_km": 1.5, "hour_of_day": 12.0}
    assert from_avro["categorical"]["channel"] == "online"


def test_defaults_fill_missing_optional_fields(validator: EventValidator) -> None:
    record = {k: v for k, v in transaction(1).items() if k not in ("channel", "distance_km")}
    result = validator.validate(orjson.dumps(record), 0, 0)
    assert not isinstance(result, list)
    assert result["categorical"]["channel"] == "pos"
    assert result["numeric"]["distance_km"] == 0.0


def test_all_anomalies_are_reported(validator: EventValidator) -> None:
    bad = {**transaction(1), "amount": -1.0, "channel": "fax", "hour_of_day": "noon"}
    codes = [a.code for a in validator.validate(orjson.dumps(bad), 0, 0)]  # type: ignore[union-attr]
    assert codes == [ReasonCode.OUT_OF_RANGE, ReasonCode.UNKNOWN_CATEGORY, ReasonCode.WRONG_TYPE]


def test_unknown_fields_can_be_allowed(codec: AvroCodec) -> None:
    lenient = EventValidator(
        load_domain(codec.catalog), codec, Constraints(allow_unknown_fields=True)
    )
    assert not isinstance(lenient.validate(orjson.dumps({**transaction(1), "x": 1}), 0, 0), list)


def test_constraints_on_unknown_fields_fail_early(codec: AvroCodec) -> None:
    from headwater.core.errors import SchemaError
    from headwater.streams.anomalies import FieldConstraint

    with pytest.raises(SchemaError, match="amout"):
        EventValidator(
            load_domain(codec.catalog), codec, Constraints({"amout": FieldConstraint(minimum=0)})
        )


def test_avro_records_that_break_a_constraint_are_explained(
    codec: AvroCodec, validator: EventValidator
) -> None:
    cases: list[tuple[dict[str, object], ReasonCode, str]] = [
        ({"amount": -0.5}, ReasonCode.OUT_OF_RANGE, "amount=-0.5 is below 0.0"),
        ({"amount": 2e6}, ReasonCode.OUT_OF_RANGE, "amount=2000000.0 is above 1000000.0"),
        ({"distance_km": float("nan")}, ReasonCode.NON_FINITE, "distance_km=nan"),
        ({"amount": float("inf")}, ReasonCode.NON_FINITE, "amount=inf"),
        ({"hour_of_day": 24}, ReasonCode.OUT_OF_RANGE, "hour_of_day=24 is above 23"),
        ({"channel": "fax"}, ReasonCode.UNKNOWN_CATEGORY, "channel='fax' is not one of"),
    ]
    for change, code, reason in cases:
        value = codec.encode(TRANSACTION, {**transaction(1), **change})
        found = validator.validate(value, 0, 0)
        assert isinstance(found, list), change
        assert [a.code for a in found] == [code], change
        assert reason in found[0].reason, found[0].reason
    assert not isinstance(validator.validate(codec.encode(TRANSACTION, transaction(1)), 0, 0), list)
