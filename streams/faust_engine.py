"""The feature worker on Faust (``HEADWATER_STREAM_ENGINE=faust``): an agent takes batches of
``events.raw`` from Faust's stream and keeps entity states in a Faust table, whose changelog is
the one :mod:`headwater.streams.worker` describes (written by the worker itself, with librdkafka,
once a
batch's outputs are acknowledged; Faust recovers the table from it on start).

Faust's per-event stream delivery costs more than all of the feature work (see bench/README.md),
which is why the librdkafka engine is the default; this one stays for deployments that run
their other agents on Faust.
"""

from __future__ import annotations

import logging
from typing import Any

from headwater.core.settings import HeadwaterSettings
from headwater.streams.changelog import ChangelogStore
from headwater.streams.idle import IdleExpiry
from headwater.streams.pipeline import RawRecord
from headwater.streams.worker import (
    BATCH_MAX,
    BATCH_WITHIN_S,
    BatchScoring,
    FeatureBatches,
    WorkerCounters,
    app_id,
    table_name,
)

log = logging.getLogger("headwater.streams.faust_engine")


def _credentials(settings: HeadwaterSettings) -> Any:
    """The same security settings the librdkafka clients use, in Faust's terms."""
    import ssl

    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(cafile=settings.kafka_ssl_ca_location or None)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


def _faust_app(settings: HeadwaterSettings) -> Any:
    import faust

    datadir = settings.home / "streams" / app_id(settings)
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        app_id(settings),
        broker=[f"kafka://{address}" for address in settings.bootstrap_servers.split(",")],
        broker_credentials=_credentials(settings),
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        datadir=str(datadir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        producer_acks=-1,
        producer_linger_ms=5,
        stream_buffer_maxsize=BATCH_MAX * 2,
        broker_commit_every=BATCH_MAX * 5,
    )


def build_app(
    settings: HeadwaterSettings, scoring: BatchScoring | None = None
) -> tuple[Any, WorkerCounters]:
    """The Faust app with the feature agent and its table, for the configured domain."""
    batches = FeatureBatches(settings, scoring)
    app = _faust_app(settings)
    raw = app.topic(
        settings.topic("events.raw"),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    table = app.Table(
        table_name(batches.feature_set),
        default=None,
        key_type=bytes,  # bytes types make Faust use the raw serializer, here and in recovery
        value_type=bytes,
        partitions=settings.topic_partitions,
    )
    producer = batches.producer

    @app.agent(raw, name="features")  # type: ignore[untyped-decorator]
    async def features_agent(stream: Any) -> None:
        # Faust recovers the table itself, so the idle clocks start with the events that come
        # after a start, and states it recovered are on them only once their entity changes;
        # and Faust commits offsets of its own, so evictions are not held behind them.
        idle = IdleExpiry(settings.entity_idle_ttl_ms)
        store = ChangelogStore(batches.feature_set, table.data, idle)
        try:
            async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
                batch = [
                    RawRecord(e.message.partition, e.message.offset, e.message.key, e.message.value)
                    for e in events
                ]
                out = batches.outputs(batch, store)
                await producer.confirm()  # outputs first: a state never runs ahead of them
                batches.states(out, store)
                await producer.confirm()
                batches.done(len(batch), out)  # Faust commits the offsets of acked events
        except Exception as error:
            # A crashed agent would leave a live but idle worker; stop it so it gets noticed
            # (and restarted, reprocessing from the last committed offsets).
            log.exception("feature agent failed; stopping the worker")
            await app.crash(error)
            raise

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def report() -> None:
        log.info("feature worker (faust): %s", batches.counters)

    return app, batches.counters


def run_faust_worker(settings: HeadwaterSettings, scoring: BatchScoring | None = None) -> None:
    import faust

    app, _ = build_app(settings, scoring)
    faust.Worker(app, loglevel="INFO").execute_from_commandline()
