"""The feature worker that scores: ``events.raw`` in; ``events``, ``features`` and ``predictions``
out, in the same batch.

``python -m headwater.serving.inline_worker`` (what ``headwater up`` runs as its feature worker)
runs :mod:`headwater.streams.worker` with :class:`InlineScoring` plugged in: each batch's
feature vectors are scored through the same runtime as the standalone scorer's (the registry
index, the loader, the live routing and the fallback chain with its guards), and the
predictions are produced with the batch's features. Through the standalone scorer an event's
prediction is two broker hops behind its features; here it leaves with them.

What stays as it was: a prediction's request id is its event's id, so a batch replayed after a
crash produces the same ids (and the warehouse keeps one row per id); the batch's input offsets
are committed only once its features, predictions and states are acknowledged; the features
records are the same records. The features this worker scored carry the ``headwater-scored-by``
header naming the model, and that model's standalone scorer skips them. Until the model has a
routing this worker scores nothing, and the standalone scorer answers those features once it
has one. ``HEADWATER_INLINE_SCORING=false`` runs the plain feature worker.

>>> from headwater.streams.pipeline import FeatureRow
>>> request_of(FeatureRow(2, 40, {"event_id": "e1", "entity_id": "c1", "values": {"x": 1.0},
...     "event_time_ms": 5, "feature_set": "fs", "feature_set_version": 3}), "raw", 0.5)
ScoreRequest(request_id='e1', entity_id='c1', features={'x': 1.0}, event_time_ms=5, \
received_at=0.5, feature_set='fs', feature_set_version=3)
"""

from __future__ import annotations

import logging
import sys

import torch

from headwater.core.errors import HeadwaterError
from headwater.core.logs import configure_logging
from headwater.core.settings import HeadwaterSettings, load_settings
from headwater.infra.event_bus import make_codec
from headwater.infra.metrics import serve_process_metrics
from headwater.schemas.dead_letters import dead_letter
from headwater.schemas.models import DeadLetter, FeatureVector, Prediction
from headwater.schemas.topics import topic_spec
from headwater.serving.runtime import ServingRuntime, start_runtime
from headwater.serving.scorer import Scorer, ScoreRequest
from headwater.streams.fast_avro import FastAvro
from headwater.streams.pipeline import BatchOutput, FeatureRow, OutRecord
from headwater.streams.worker import run_worker

log = logging.getLogger("headwater.serving.inline_worker")


def request_of(row: FeatureRow, raw_topic: str, received_at: float) -> ScoreRequest:
    """The request of one computed feature vector: its event's id is the request id (the
    source record's place when the event has none), as the standalone scorer names it."""
    record = row.record
    return ScoreRequest(
        request_id=record["event_id"] or f"{raw_topic}-{row.partition}-{row.source_offset}",
        entity_id=record["entity_id"],
        features=record["values"],
        event_time_ms=record["event_time_ms"],
        received_at=received_at,
        feature_set=record["feature_set"],
        feature_set_version=record["feature_set_version"],
    )


class InlineScoring:
    """:class:`~headwater.streams.worker.BatchScoring` through a :class:`ServingRuntime`."""

    def __init__(self, runtime: ServingRuntime) -> None:
        self.runtime = runtime
        self.model = runtime.model
        self.scorer: Scorer = runtime.scorer("kafka")
        self.raw_topic = runtime.settings.topic("events.raw")
        self._encode = FastAvro(make_codec(runtime.settings)).encode
        self._key_of = topic_spec("predictions").key_of
        self.failures = 0

    def score(self, out: BatchOutput, received_at: float) -> None:
        if self.runtime.routing.router(self.model) is None:
            return  # no routing yet: the standalone scorer answers these once there is one
        try:
            records, predicted, unreadable = self._scored(out.features, received_at)
        except Exception:
            # Never one batch's scoring stopping the worker (a restart would replay into the
            # same failure): its features go out unmarked, and the standalone scorer, with
            # its own dead-letter path, answers them.
            self.failures += 1
            log.exception("scoring a batch of %d in the feature worker failed", len(out.features))
            return
        # First in the batch: they leave on the prompt lane before the batch's events and
        # features are handed to the bulk one (no order across topics is promised anyway).
        out.records[:0] = records
        out.scored_by, out.predicted, out.unreadable = self.model, predicted, unreadable

    def _scored(
        self, rows: list[FeatureRow], received_at: float
    ) -> tuple[list[OutRecord], int, int]:
        """The batch's prediction records (answers and shadows) and dead letters, how many
        answers, how many vectors the model could not read."""
        raw_topic = self.raw_topic
        requests = [request_of(row, raw_topic, received_at) for row in rows]
        source = {request.request_id: row for request, row in zip(requests, rows, strict=True)}
        scored = self.scorer.answer(requests)
        answered = {p.request_id for p in scored.predictions}
        shadows = self.scorer.shadow([r for r in requests if r.request_id in answered])
        encode, key_of = self._encode, self._key_of
        records = []
        for prediction in (*scored.predictions, *shadows):
            avro = prediction.to_avro()
            row = source[prediction.request_id]
            records.append(
                OutRecord(
                    "predictions",
                    row.partition,
                    key_of(avro).encode(),
                    encode(Prediction.SCHEMA, avro),
                    row.source_offset,
                    keyed=True,
                )
            )
        for rejection in scored.rejected:
            row = source[rejection.request.request_id]
            letter = dead_letter(
                raw_topic,
                row.partition,
                row.source_offset,
                "features_unreadable",
                rejection.reason,
                rejection.request.entity_id.encode(),
                encode(FeatureVector.SCHEMA, row.record),
            )
            value = encode(DeadLetter.SCHEMA, letter.to_avro())
            records.append(
                OutRecord("deadletter", row.partition, raw_topic.encode(), value, row.source_offset)
            )
        return records, len(scored.predictions), len(scored.rejected)


def run_scoring_worker(settings: HeadwaterSettings) -> None:
    """The feature worker, scoring ``HEADWATER_SERVING_MODEL`` unless inline scoring is off."""
    if not settings.inline_scoring:
        serve_process_metrics(settings, "feature_worker")
        run_worker(settings)
        return
    torch.set_num_threads(1)  # small batches: intra-op threads only contend for the cores
    runtime = start_runtime(settings)
    serve_process_metrics(settings, "feature_worker", serving=runtime)
    log.info("the feature worker scores model %r in its process", runtime.model)
    try:
        run_worker(settings, InlineScoring(runtime))
    finally:
        runtime.stop()


def main() -> int:
    configure_logging("feature_worker")
    try:
        run_scoring_worker(load_settings())
    except HeadwaterError as error:
        print(f"headwater.serving.inline_worker: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
