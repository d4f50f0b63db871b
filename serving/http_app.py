"""HTTP scoring: ``POST /predict``, ``GET /healthz``, ``GET /models``, ``PUT /admin/routing``.

A request names an entity and either carries its feature vector or lets the server look the
entity's current features up in the online store (the ``lookup`` callable: the streams' table
replica in production). Concurrent requests are micro-batched into one model call
(:mod:`headwater.serving.http_batcher`), routed and guarded exactly like the Kafka scorer, and every
answer is also logged to ``predictions`` with ``source="http"`` (shadow predictions too, never
returned). Bodies are validated: malformed input gets a 4xx with the reason, never a 500.

Every request gets a request id of its own, in the ``http:`` namespace (:func:`http_request_id`):
a caller's ``request_id`` is kept inside it, never used alone, so two callers sending the same
id never get each other's answers, and an HTTP prediction never overwrites a Kafka-scored one in
the warehouse. The answer carries both (``request_id``, the one to label, and
``client_request_id``). When more requests wait than ``HEADWATER_SERVING_HTTP_QUEUE_MAX``, a new
one is answered 503 at once.
Routing changes need ``Authorization: Bearer <HEADWATER_ADMIN_TOKEN>``.

Run one with ``python -m headwater.serving.http_server`` (binds ``HEADWATER_BIND_HOST``, default
127.0.0.1, and ``HEADWATER_HTTP_PORT``).

>>> from pydantic import ValidationError
>>> PredictBody(entity_id="card-1", features={"amount": 3.5}).features
{'amount': 3.5}
>>> try:
...     PredictBody(entity_id="card-1", features={"amount": float("nan")})
... except ValidationError as error:
...     print(error.errors()[0]["loc"])
('features', 'amount')
"""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Protocol

import orjson
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from headwater.core.errors import HeadwaterError
from headwater.schemas.models import Route
from headwater.serving.batching import BatchPolicy
from headwater.serving.errors import QueueFull, RoutingError
from headwater.serving.http_batcher import AsyncBatcher
from headwater.serving.router import parse_version
from headwater.serving.routing import publish_routing, routing_event
from headwater.serving.runtime import ServingRuntime
from headwater.serving.scorer import Rejected, Scored, ScoreRequest


class FoundFeatures(Protocol):
    """What a lookup returns (streams' ``OnlineFeatures`` is one)."""

    @property
    def values(self) -> Mapping[str, float]: ...
    @property
    def event_time_ms(self) -> int: ...
    @property
    def feature_set(self) -> str: ...
    @property
    def feature_set_version(self) -> int: ...


OnlineLookup = Callable[[str], FoundFeatures | None]
_Strict = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class PredictBody(BaseModel):
    model_config = _Strict
    entity_id: str = Field(min_length=1, max_length=256)
    request_id: str | None = Field(default=None, min_length=1, max_length=256)
    features: dict[str, float] | None = None


class PredictAnswer(BaseModel):
    model_config = _Strict
    request_id: str  # the platform's id of this prediction (http:…): labels name it
    client_request_id: str | None  # the caller's own id, as sent
    entity_id: str
    model: str
    version: int
    route: Route
    output: float
    fallback: bool
    fallback_reason: str
    latency_ms: float
    features_from: str
    features: dict[str, float]  # the exact values the model read (as logged)
    event_time_ms: int  # the features' event time (online: of the entity's newest event)
    freshness_ms: int | None  # online features' age when scored; None when sent in the body


class RoutingBody(BaseModel):
    model_config = _Strict
    weights: dict[str, float] = Field(min_length=1)
    shadows: list[int] = Field(default_factory=list)
    reason: str = ""


class ScoringService:
    """The endpoints' work for one scoring process; :func:`create_app` routes HTTP to it."""

    def __init__(self, runtime: ServingRuntime, lookup: OnlineLookup | None = None) -> None:
        self.runtime = runtime
        self.lookup = lookup
        self.scorer = runtime.scorer("http")
        policy = BatchPolicy(
            max_batch_size=runtime.settings.serving_batch_max,
            max_latency_s=runtime.settings.serving_batch_latency_ms / 1000,
        )
        self.batcher = AsyncBatcher(
            self.scorer.answer,
            policy=policy,
            after=self.log_batch,
            max_queue=runtime.settings.serving_http_queue_max,
        )

    def log_batch(self, requests: Sequence[ScoreRequest], scored: Scored) -> None:
        """Answers, then shadow predictions, to ``predictions`` (after the answers went out)."""
        for prediction in scored.predictions:
            self.runtime.bus.send("predictions", prediction)
        answered = {p.request_id for p in scored.predictions}
        for prediction in self.scorer.shadow([r for r in requests if r.request_id in answered]):
            self.runtime.bus.send("predictions", prediction)

    async def predict(self, body: PredictBody) -> Response:
        received = time.monotonic()
        request = await _request_of(body, self.lookup, received)
        try:
            answer = await self.batcher.submit(request)
        except QueueFull as error:
            raise HTTPException(503, str(error), headers={"Retry-After": "1"}) from None
        except HeadwaterError as error:
            raise HTTPException(503, f"scoring failed: {error}") from None
        if isinstance(answer, Rejected):
            raise HTTPException(422, answer.reason)
        online = None if body.features is not None else answer.served_at_ms - answer.event_time_ms
        # Rendered directly (the route declares PredictAnswer for its schema): re-validating
        # a body built from a validated Prediction would only cost time on every request.
        content = {
            "request_id": answer.request_id,
            "client_request_id": body.request_id,
            "entity_id": answer.entity_id,
            "model": answer.model,
            "version": answer.version,
            "route": answer.route,
            "output": answer.output,
            "fallback": answer.fallback,
            "fallback_reason": answer.fallback_reason,
            "latency_ms": answer.latency_ms,
            "features_from": "body" if online is None else "online",
            "features": answer.features,
            "event_time_ms": answer.event_time_ms,
            "freshness_ms": online,
        }
        return Response(orjson.dumps(content), media_type="application/json")

    async def healthz(self) -> dict[str, Any]:
        if self.runtime.routing.router(self.runtime.model) is None:
            raise HTTPException(503, f"model {self.runtime.model!r} has no routing yet")
        return {"status": "ok", "model": self.runtime.model}

    async def models(self) -> dict[str, Any]:
        runtime = self.runtime
        routing = runtime.routing.event(runtime.model)
        return {
            "model": runtime.model,
            "routing": routing.to_avro() if routing else None,
            "registered": runtime.index.versions(runtime.model),
            "loaded": [{"version": m.version, "sha256": m.sha256} for m in runtime.loader.cached()],
            "breakers": runtime.chain.breaker_states(),
        }

    async def set_routing(
        self, body: RoutingBody, authorization: Annotated[str, Header()] = ""
    ) -> dict[str, Any]:
        _check_admin(self.runtime.settings.admin_token.get_secret_value(), authorization)
        try:
            weights = {parse_version(k): w for k, w in body.weights.items()}
            event = routing_event(
                self.runtime.model, weights, body.shadows, reason=body.reason, actor="http-admin"
            )
        except RoutingError as error:
            raise HTTPException(422, str(error)) from None
        await asyncio.to_thread(publish_routing, self.runtime.bus, event)
        return event.to_avro()


def create_app(runtime: ServingRuntime, *, lookup: OnlineLookup | None = None) -> FastAPI:
    """The HTTP app of one scoring process (``runtime`` is shared with nothing else)."""
    service = ScoringService(runtime, lookup)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.batcher.start()
        yield
        await service.batcher.stop()
        await asyncio.to_thread(runtime.bus.flush)

    app = FastAPI(title="Headwater scoring", lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, _invalid_body)
    app.post("/predict", response_model=PredictAnswer)(service.predict)
    app.get("/healthz")(service.healthz)
    app.get("/models")(service.models)
    app.put("/admin/routing")(service.set_routing)
    return app


async def _invalid_body(_: Request, error: Exception) -> JSONResponse:
    """422 naming each bad field, without echoing the input (a NaN in it would not render)."""
    problems = error.errors() if isinstance(error, RequestValidationError) else []
    detail = [
        {"loc": [str(part) for part in p.get("loc", ())], "msg": str(p.get("msg", ""))}
        for p in problems
    ]
    reason = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in detail)
    return JSONResponse({"detail": detail, "reason": reason}, status_code=422)


def _check_admin(token: str, authorization: str) -> None:
    if not token:
        raise HTTPException(403, "admin routes are disabled: set HEADWATER_ADMIN_TOKEN")
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(401, "admin routes need 'Authorization: Bearer <admin token>'")


def http_request_id(client_request_id: str | None) -> str:
    """An id of its own for one HTTP request: ``http:`` and, when the caller sent one, the
    caller's id, then a random part no other request shares.

    >>> http_request_id("order-7").startswith("http:order-7:")
    True
    >>> http_request_id("order-7") != http_request_id("order-7")
    True
    """
    own = uuid.uuid4().hex
    return f"http:{client_request_id}:{own}" if client_request_id else f"http:{own}"


async def _request_of(
    body: PredictBody, lookup: OnlineLookup | None, received: float
) -> ScoreRequest:
    request_id = http_request_id(body.request_id)
    if body.features is not None:
        return ScoreRequest(
            request_id, body.entity_id, body.features, int(time.time() * 1000), received
        )
    if lookup is None:
        raise HTTPException(
            422, "no 'features' in the body and this server has no online feature lookup"
        )
    try:
        found = await asyncio.to_thread(lookup, body.entity_id)
    except HeadwaterError as error:
        raise HTTPException(503, f"online feature lookup failed: {error}") from None
    if found is None:
        raise HTTPException(404, f"no online features for entity {body.entity_id!r}")
    return ScoreRequest(
        request_id,
        body.entity_id,
        dict(found.values),
        found.event_time_ms,
        received,
        found.feature_set,
        found.feature_set_version,
    )
