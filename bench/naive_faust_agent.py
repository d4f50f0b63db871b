"""The naive baseline of ``bench_features``: a Faust agent doing the feature work one event at
a time — decode and validate, read the entity's state from a table, update it, write it back
(a changelog record per event), bump a per-entity count in a second table, send the vector.

``python -m bench.naive_faust_agent`` with the same ``HEADWATER_*`` settings as the worker.
"""

from __future__ import annotations

import time
from typing import Any

from headwater.core.settings import load_settings
from headwater.infra.event_bus import make_codec
from headwater.schemas.domain import load_domain
from headwater.schemas.models import FeatureVector
from headwater.streams.feature_module import load_feature_module
from headwater.streams.featureset import EntityState
from headwater.streams.pipeline import feature_record
from headwater.streams.validation import EventValidator


def main() -> None:
    import faust

    settings = load_settings()
    codec = make_codec(settings)
    module = load_feature_module(settings.features)
    validator = EventValidator(load_domain(codec.catalog), codec, module.constraints)
    fs = module.feature_set
    app_id = settings.topic("bench-naive")
    datadir = settings.home / "streams" / app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=[f"kafka://{address}" for address in settings.bootstrap_servers.split(",")],
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        datadir=str(datadir),
        topic_partitions=settings.topic_partitions,
        broker_session_timeout=10.0,
        consumer_auto_offset_reset="earliest",
    )
    raw_bytes: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    raw = app.topic(settings.topic("events.raw"), **raw_bytes)
    features = app.topic(settings.topic("features"), **raw_bytes)
    states = app.Table("naive-state", default=None, key_type=bytes, value_type=bytes)
    counts = app.Table("naive-count", default=int)

    @app.agent(raw)
    async def naive(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            checked = validator.validate(message.value, message.partition, message.offset)
            if isinstance(checked, list):
                continue
            key = checked["entity_id"].encode()
            stored = states.get(key)
            state = EntityState.from_bytes(fs, stored) if stored else fs.new_state()
            values = state.update(
                checked["event_time_ms"], checked["numeric"], checked["categorical"]
            )
            states[key] = state.to_bytes()
            counts[checked["entity_id"]] += 1
            record = feature_record(fs, checked, values or {}, int(time.time() * 1000))
            await features.send(key=key, value=codec.encode(FeatureVector.SCHEMA, record))

    faust.Worker(app, loglevel="WARNING").execute_from_commandline()


if __name__ == "__main__":
    main()
