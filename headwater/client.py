"""The client applications use: send events and labels, read predictions, score over HTTP.

One :class:`Client` per process, configured like every Headwater process by the settings
(``HEADWATER_*`` environment variables, ``core/settings.py``). Records are checked before they
leave: an application event against the configured domain schema (``HEADWATER_EVENT_SCHEMA_FILE``,
the demo's card transactions when unset), a platform event (a label, ...) against its model.
``headwater produce`` sends through the same :meth:`Client.send`.

Checking a record needs no broker:

>>> client = Client()
>>> client.check("labels", {"entity_id": "card-1", "label": 1.0, "event_time_ms": 5,
...                         "labeled_at_ms": 9})[0]
'dev.headwater.Label'
>>> try:
...     client.check("events.raw", {"card_id": "card-1"})
... except SchemaError as error:
...     print(error)
not a valid dev.headwater.demo.Transaction record: Field(...event_id) is None expected string
>>> try:
...     client.check("labels", {"entity_id": "card-1", "label": "yes"})
... except SchemaError as error:
...     print(str(error).split(";")[0])
label: Input should be a valid number, unable to parse string as a number
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Generator, Mapping
from types import TracebackType
from typing import Any, Literal

import httpx
from confluent_kafka import KafkaError
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate
from pydantic import BaseModel, ConfigDict, ValidationError

from headwater.core.errors import BrokerUnavailable, SchemaError, ScoringUnavailable
from headwater.core.settings import HeadwaterSettings, load_settings
from headwater.infra.event_bus import EventBus
from headwater.infra.kafka_clients import make_consumer
from headwater.schemas.catalog import SchemaCatalog
from headwater.schemas.domain import Domain, load_domain
from headwater.schemas.models import Label, Prediction
from headwater.schemas.topics import topic_spec
from headwater.streams.fast_avro import FastAvro

log = logging.getLogger("headwater.client")


class Score(BaseModel):
    """One answer of the HTTP scoring server (``POST /predict``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    # The platform's own id of the request (``http:<client id>:<uuid>``): labels name it.
    request_id: str
    # The id the caller sent, echoed back.
    client_request_id: str | None = None
    entity_id: str
    model: str
    version: int
    route: Literal["champion", "canary", "shadow", "default"]
    output: float
    fallback: bool
    fallback_reason: str
    latency_ms: float
    features_from: str
    features: dict[str, float]
    event_time_ms: int
    freshness_ms: int | None


class Client:
    """Sends an application's events and labels, reads its predictions, scores over HTTP.

    Sends are asynchronous; :meth:`flush` (or leaving a ``with`` block) waits until the broker
    acknowledged each, or fails naming the broker.
    """

    def __init__(self, settings: HeadwaterSettings | None = None) -> None:
        self.settings = settings or load_settings()
        self._bus: EventBus | None = None  # made on first send: checking and scoring need none
        self._domain: Domain | None = None
        self.undecodable = 0  # records on predictions that did not decode (logged, skipped)

    @property
    def bus(self) -> EventBus:
        """The producer underneath, with the configured codec and domain."""
        if self._bus is None:
            self._bus = EventBus(self.settings)
        return self._bus

    @property
    def domain(self) -> Domain:
        """The application's event type: the schema of ``events.raw``."""
        if self._domain is None:
            self._domain = (
                self._bus.domain
                if self._bus is not None
                else load_domain(SchemaCatalog.default(), self.settings.event_schema_file)
            )
        return self._domain

    def check(self, topic: str, record: Any) -> tuple[str, dict[str, Any]]:
        """The schema name and the record as it will be encoded, or a :class:`SchemaError`
        saying what is wrong: ``events.raw`` takes the domain's events, every other topic its
        platform event (``labels`` a :class:`~headwater.schemas.models.Label`, ...)."""
        if not isinstance(record, Mapping):
            raise SchemaError(f"expected a JSON object, got {type(record).__name__}")
        model = topic_spec(topic).model
        if model is None:
            schema = self.domain.schema
            try:
                validate(dict(record), schema.parsed, raise_errors=True)
            except AvroValidationError as error:
                reasons = "; ".join(str(e) for e in error.errors) or str(error)
                raise SchemaError(f"not a valid {schema.name} record: {reasons}") from None
            return schema.name, dict(record)
        try:
            return model.SCHEMA, model.model_validate(record).to_avro()
        except ValidationError as error:
            reasons = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()
            )
            raise SchemaError(reasons) from None

    def send(self, topic: str, record: Mapping[str, Any]) -> None:
        """Check ``record`` for ``topic`` (:meth:`check`), encode and send it, keyed as the
        topic says; a record over the producer's size limit raises ``RecordTooLarge``."""
        schema, checked = self.check(topic, record)
        if topic == "events.raw":
            self.bus.send_raw(checked)
        else:
            self.bus.send_record(topic, schema, checked, topic_spec(topic).key_of(checked))

    def send_event(self, record: Mapping[str, Any]) -> None:
        """Send one event of the application's domain to ``events.raw``."""
        self.send("events.raw", record)

    def send_label(
        self,
        entity_id: str,
        label: float,
        *,
        event_time_ms: int,
        request_id: str = "",
        event_id: str = "",
        labeled_at_ms: int | None = None,
    ) -> Label:
        """Send the outcome of an entity's event to ``labels``; the loop joins it to the
        prediction of ``request_id``, or of ``event_id``, or the entity's at ``event_time_ms``."""
        sent = Label(
            request_id=request_id,
            entity_id=entity_id,
            event_id=event_id,
            label=label,
            event_time_ms=event_time_ms,
            labeled_at_ms=int(time.time() * 1000) if labeled_at_ms is None else labeled_at_ms,
        )
        self.send("labels", sent.to_avro())
        return sent

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every record sent so far is acknowledged by the broker."""
        if self._bus is not None:
            self._bus.flush(timeout_s)

    def predictions(
        self,
        model: str | None = None,
        *,
        group: str,
        from_beginning: bool = False,
        idle_timeout_s: float | None = None,
    ) -> Generator[Prediction, None, None]:
        """The predictions of ``model`` (every model's when None), decoded, read in consumer
        group ``group``: each record's offset is committed once the next one is asked for, so
        a restarted reader of the same group goes on after the last prediction it handled.
        Stops when none came for ``idle_timeout_s`` (never when None). A record that does not
        decode is logged and skipped (``undecodable`` counts them)."""
        consumer = make_consumer(
            self.settings,
            group,
            **{"auto.offset.reset": "earliest" if from_beginning else "latest"},
        )
        consumer.subscribe([self.settings.topic("predictions")])
        fast = FastAvro(self.bus.codec)
        last_seen = time.monotonic()
        handled = None  # the newest record handed back and asked past: its offset is committed
        try:
            while idle_timeout_s is None or time.monotonic() - last_seen < idle_timeout_s:
                message = consumer.poll(1.0)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise BrokerUnavailable(f"reading predictions: {error.str()}")
                last_seen = time.monotonic()
                prediction = self._prediction(fast, message.value() or b"")
                if prediction is not None and (model is None or prediction.model == model):
                    yield prediction
                consumer.commit(message=message, asynchronous=True)
                handled = message
        finally:
            if handled is not None:  # the asynchronous commits are durable before we leave
                consumer.commit(message=handled, asynchronous=False)
            consumer.close()

    def _prediction(self, fast: FastAvro, value: bytes) -> Prediction | None:
        try:
            return Prediction.from_avro(fast.decode(value, Prediction.SCHEMA))
        except (SchemaError, ValidationError) as error:
            self.undecodable += 1
            log.warning("skipped an undecodable record on predictions: %s", error)
            return None

    def score(
        self,
        entity_id: str,
        features: Mapping[str, float] | None = None,
        *,
        request_id: str | None = None,
        url: str | None = None,
        timeout_s: float = 5.0,
    ) -> Score:
        """Score ``entity_id`` on the HTTP scoring server, with ``features`` or (when None) the
        entity's current online features. ``url`` defaults to the configured server."""
        base = url or f"http://{_reachable(self.settings.bind_host)}:{self.settings.http_port}"
        body: dict[str, Any] = {"entity_id": entity_id, "request_id": request_id or _new_id()}
        if features is not None:
            body["features"] = dict(features)
        try:
            response = httpx.post(f"{base}/predict", json=body, timeout=timeout_s)
        except httpx.HTTPError as error:
            raise ScoringUnavailable(
                f"scoring server {base} did not answer within {timeout_s} s: {error}; is "
                "`headwater up` running (HEADWATER_HTTP_PORT)?"
            ) from error
        if response.status_code != 200:
            raise ScoringUnavailable(
                f"scoring server {base} refused {entity_id!r}: {response.status_code} "
                f"{response.text[:500]}"
            )
        return Score.model_validate_json(response.content)

    def close(self) -> None:
        """Flush what was sent."""
        self.flush()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()


def _reachable(host: str) -> str:
    """A wildcard bind address is reached on the loopback interface."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _new_id() -> str:
    return uuid.uuid4().hex
