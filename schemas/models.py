"""Python models of the platform's events, one per Avro schema, validated by pydantic.

A model converts to the dict fastavro writes (:meth:`EventModel.to_avro`) and back
(:meth:`EventModel.from_avro`); a test checks that each model's fields are exactly its schema's.

>>> label = Label(entity_id="card-1", label=1.0, event_time_ms=1, labeled_at_ms=2)
>>> Label.from_avro(label.to_avro()) == label
True
>>> from pydantic import ValidationError
>>> try:
...     Label(entity_id="", label=1.0, event_time_ms=1, labeled_at_ms=2)
... except ValidationError as error:
...     print(error.errors()[0]["loc"], error.errors()[0]["type"])
('entity_id',) string_too_short
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

ParamValue = str | float | int | bool
Route = Literal["champion", "canary", "shadow", "default"]
NonEmpty = Field(min_length=1)


class EventModel(BaseModel):
    """Base of every event model: frozen, no unknown fields, tied to one Avro schema."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    SCHEMA: ClassVar[str]

    def to_avro(self) -> dict[str, Any]:
        """The record fastavro writes: the fields as they are. Every model is flat (no model
        inside a model), so this equals ``model_dump()`` (tested for each), but its maps and
        lists are the frozen model's own rather than copies: a tenth of the cost, on a path
        that writes a prediction for every event."""
        return dict(self.__dict__)

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> Self:
        return cls.model_validate(record)


class Transaction(EventModel):
    """The demo domain's raw event: a card transaction."""

    SCHEMA: ClassVar[str] = "dev.headwater.demo.Transaction"
    event_id: str = NonEmpty
    card_id: str = NonEmpty
    event_time_ms: int = Field(ge=0)
    amount: float
    merchant_category: str
    country: str
    channel: str = "pos"
    distance_km: float = 0.0
    hour_of_day: int = 0

    def numeric(self) -> dict[str, float]:
        """The numeric fields, as validation puts them in an ``Event``."""
        return {
            "amount": self.amount,
            "distance_km": self.distance_km,
            "hour_of_day": float(self.hour_of_day),
        }

    def categorical(self) -> dict[str, str]:
        """The categorical fields, as validation puts them in an ``Event``."""
        return {
            "merchant_category": self.merchant_category,
            "country": self.country,
            "channel": self.channel,
        }


class Event(EventModel):
    SCHEMA: ClassVar[str] = "dev.headwater.Event"
    event_id: str = NonEmpty
    entity_id: str = NonEmpty
    event_type: str = NonEmpty
    event_time_ms: int = Field(ge=0)
    numeric: dict[str, float] = Field(default_factory=dict)
    categorical: dict[str, str] = Field(default_factory=dict)
    source_partition: int = -1
    source_offset: int = -1


class DeadLetter(EventModel):
    SCHEMA: ClassVar[str] = "dev.headwater.DeadLetter"
    source_topic: str = NonEmpty
    source_partition: int
    source_offset: int
    reason_code: str = NonEmpty
    reason: str
    original_key: bytes | None = None
    original_value: bytes | None = None
    failed_at_ms: int
    # The original value's full size and SHA-256: the bytes kept may be cut (schemas.dead_letters).
    original_size: int = -1
    original_sha256: str = ""


class FeatureVector(EventModel):
    SCHEMA: ClassVar[str] = "dev.headwater.FeatureVector"
    entity_id: str = NonEmpty
    feature_set: str = NonEmpty
    feature_set_version: int = Field(ge=1)
    event_id: str
    event_time_ms: int = Field(ge=0)
    computed_at_ms: int
    values: dict[str, float]


class Prediction(EventModel):
    SCHEMA: ClassVar[str] = "dev.headwater.Prediction"
    request_id: str = NonEmpty
    entity_id: str
    model: str = NonEmpty
    version: int = Field(ge=0)
    route: Route
    output: float
    features: dict[str, float]
    feature_set: str = ""
    feature_set_version: int = 0
    event_time_ms: int
    served_at_ms: int
    latency_ms: float = Field(ge=0)
    fallback: bool = False
    fallback_reason: str = ""
    source: Literal["kafka", "http"] = "kafka"


class Label(EventModel):
    SCHEMA: ClassVar[str] = "dev.headwater.Label"
    request_id: str = ""
    entity_id: str = NonEmpty
    event_id: str = ""
    label: float
    event_time_ms: int = Field(ge=0)
    labeled_at_ms: int = Field(ge=0)


class Metric(EventModel):
    SCHEMA: ClassVar[str] = "dev.headwater.Metric"
    model: str = NonEmpty
    version: int
    route: str
    metric: str = NonEmpty
    value: float
    window: str
    window_start_ms: int
    window_end_ms: int
    count: int = Field(ge=0)


class DriftAlarm(EventModel):
    SCHEMA: ClassVar[str] = "dev.headwater.DriftAlarm"
    alarm_id: str = NonEmpty
    model: str = NonEmpty
    version: int = 0
    feature: str = ""
    kind: Literal["data", "skew", "concept", "quality"]
    statistic: str = NonEmpty
    value: float
    threshold: float
    window_size: int = Field(ge=0)
    window_start_ms: int
    window_end_ms: int
    severity: Literal["warning", "critical"]
    detected_at_ms: int


RETRAIN_CAP = "retrain_cap"
"""The statistic of the alarm the loop raises for a model it cannot fix: still degraded after
its capped number of retrain requests (``value`` requests, ``threshold`` the cap)."""


class RetrainRequest(EventModel):
    SCHEMA: ClassVar[str] = "dev.headwater.RetrainRequest"
    request_id: str = NonEmpty
    model: str = NonEmpty
    reason: str
    alarm_ids: list[str] = Field(default_factory=list)
    requested_at_ms: int
    trials: int = Field(default=0, ge=0)
    since_ms: int = Field(default=0, ge=0)  # the detected change, in event time; 0: all rows


class Run(EventModel):
    SCHEMA: ClassVar[str] = "dev.headwater.Run"
    run_id: str = NonEmpty
    kind: Literal["run", "trial"]
    model: str = NonEmpty
    study: str = ""
    trial_number: int = -1
    status: Literal["started", "running", "completed", "failed", "pruned"]
    step: int = 0
    params: dict[str, ParamValue] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    artifacts: dict[str, str] = Field(default_factory=dict)
    lineage: dict[str, str] = Field(default_factory=dict)
    code_revision: str = ""
    message: str = ""
    event_time_ms: int


class Trial(EventModel):
    SCHEMA: ClassVar[str] = "dev.headwater.Trial"
    study: str = NonEmpty
    trial_number: int = Field(ge=0)
    model: str = NonEmpty
    params: dict[str, ParamValue]
    dataset: str
    attempt: int = Field(default=0, ge=0)
    sent_at_ms: int


ModelAction = Literal[
    "registered", "alias", "canary", "shadow", "promoted", "rolled_back", "archived"
]


class ModelVersion(EventModel):
    SCHEMA: ClassVar[str] = "dev.headwater.ModelVersion"
    model: str = NonEmpty
    version: int = Field(ge=1)
    action: ModelAction
    run_id: str = ""
    artifact_sha256: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    signature: dict[str, str] = Field(default_factory=dict)
    alias: str = ""
    reason: str = ""
    actor: str = ""
    event_time_ms: int


class Routing(EventModel):
    SCHEMA: ClassVar[str] = "dev.headwater.Routing"
    model: str = NonEmpty
    weights: dict[str, float]
    shadows: list[int] = Field(default_factory=list)
    reason: str = ""
    actor: str = ""
    updated_at_ms: int


ALL_MODELS: tuple[type[EventModel], ...] = (
    Transaction,
    Event,
    DeadLetter,
    FeatureVector,
    Prediction,
    Label,
    Metric,
    DriftAlarm,
    RetrainRequest,
    Run,
    Trial,
    ModelVersion,
    Routing,
)
