"""The platform's topics (DESIGN.md), what each is keyed by, and the schema of its values.

>>> TOPICS["routing"].compacted
True
>>> TOPICS["predictions"].model.__name__
'Prediction'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from headwater.core.errors import UnknownTopic
from headwater.schemas import models
from headwater.schemas.models import EventModel


@dataclass(frozen=True)
class TopicSpec:
    """One topic of DESIGN.md. ``model`` is None for ``events.raw``, whose schema is the
    application's own (the configured domain's event schema)."""

    name: str
    key: str
    model: type[EventModel] | None
    key_of: Callable[[Mapping[str, Any]], str]
    compacted: bool = False

    @property
    def schema(self) -> str | None:
        return self.model.SCHEMA if self.model else None


def _field(name: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda record: str(record[name])


def _label_key(record: Mapping[str, Any]) -> str:
    return str(record.get("request_id") or record["entity_id"])


def _versioned(record: Mapping[str, Any]) -> str:
    return f"{record['model']}@{record['version']}"


def _raw_key(record: Mapping[str, Any]) -> str:
    raise UnknownTopic("events.raw is keyed by the domain's entity key; use Domain.key_of")


_SPECS = (
    TopicSpec("events.raw", "entity id", None, _raw_key),
    TopicSpec("events", "entity id", models.Event, _field("entity_id")),
    TopicSpec("deadletter", "source topic", models.DeadLetter, _field("source_topic")),
    TopicSpec("features", "entity id", models.FeatureVector, _field("entity_id")),
    TopicSpec("predictions", "request id", models.Prediction, _field("request_id")),
    TopicSpec("labels", "request id or entity id", models.Label, _label_key),
    TopicSpec("metrics", "model@version", models.Metric, _versioned),
    TopicSpec(
        "drift", "model/feature", models.DriftAlarm, lambda r: f"{r['model']}/{r['feature']}"
    ),
    TopicSpec("retrain-requests", "model", models.RetrainRequest, _field("model")),
    TopicSpec("runs", "run id", models.Run, _field("run_id")),
    # Keyed per trial, not per study: a study's trials must spread over the partitions so
    # every worker of the pool gets some.
    TopicSpec("trials", "study#trial", models.Trial, lambda r: f"{r['study']}#{r['trial_number']}"),
    TopicSpec("model-versions", "model@version", models.ModelVersion, _versioned),
    TopicSpec("routing", "model", models.Routing, _field("model"), compacted=True),
)
TOPICS: dict[str, TopicSpec] = {spec.name: spec for spec in _SPECS}


def topic_spec(name: str) -> TopicSpec:
    """The spec of a topic by its DESIGN.md name, or an error listing the topics."""
    try:
        return TOPICS[name]
    except KeyError:
        raise UnknownTopic(f"unknown topic {name!r}; topics: {', '.join(TOPICS)}") from None


# The header a ``features`` record carries when the feature worker that produced it also
# scored it (inline scoring): its value is the model's name, and that model's prediction of
# the record left in the same batch. The standalone scorer of that model skips such records,
# so each feature vector gets exactly one prediction per model whichever process scored it.
SCORED_BY_HEADER = "headwater-scored-by"
