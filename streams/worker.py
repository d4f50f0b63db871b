"""The online feature worker: a Faust app whose agent validates ``events.raw`` in batches,
applies each event to its entity's state in a Faust table (changelog-backed: the online store),
and produces ``events``, ``features`` and ``deadletter`` records.

Run it with ``python -m streams.worker`` (``headwater up`` starts it detached). The Faust web
server is off; the consumer group is ``<prefix>headwater-features``.

Delivery: a batch's outputs are produced and acknowledged by the broker first, then the changed
entity states are written to the table's changelog and acknowledged, and only then does Faust
mark the batch's input offsets as done. A worker killed anywhere in between reprocesses the
batch after changelog recovery; events its recovered state has already applied (by source
offset) are skipped, so results equal an uninterrupted run.

>>> from streams.feature_module import load_feature_module
>>> fs = load_feature_module("streams.demo.features").feature_set
>>> changelog_topic(HeadwaterSettings(topic_prefix="dev-"), fs)
'dev-headwater-features-card_activity-v1-state-changelog'
>>> WorkerCounters(consumed=3, valid=2, rejected=1)
WorkerCounters(consumed=3, valid=2, rejected=1, skipped=0, batches=0, process_s=0.0, confirm_s=0.0)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from infra.event_bus import make_codec
from infra.settings import HeadwaterSettings, load_settings
from schemas.domain import load_domain
from streams.batch_producer import BatchProducer
from streams.feature_module import load_feature_module
from streams.featureset import EntityState, FeatureSet
from streams.kafka_codecs import enable_lz4
from streams.pipeline import BatchOutput, FeaturePipeline, RawRecord

log = logging.getLogger("headwater.streams.worker")

BATCH_MAX = 2000
BATCH_WITHIN_S = 0.05


def app_id(settings: HeadwaterSettings) -> str:
    return settings.topic("headwater-features")


def table_name(fs: FeatureSet) -> str:
    return f"{fs.name}-v{fs.version}-state"


def changelog_topic(settings: HeadwaterSettings, fs: FeatureSet) -> str:
    """Faust's name for the table's changelog topic."""
    return f"{app_id(settings)}-{table_name(fs)}-changelog"


class FaustTableStore:
    """Entity states in a Faust table's local store. Values recovered from the changelog arrive
    as bytes and are decoded on first use; live values are the state objects themselves."""

    def __init__(self, table: Any, feature_set: FeatureSet) -> None:
        self._data = table.data
        self._feature_set = feature_set

    def get(self, entity: str) -> EntityState | None:
        key = entity.encode()
        value = self._data.get(key)
        if isinstance(value, bytes | bytearray):
            value = EntityState.from_bytes(self._feature_set, bytes(value))
            self._data[key] = value
        return value if isinstance(value, EntityState) else None

    def put(self, entity: str, state: EntityState, partition: int) -> None:
        self._data[entity.encode()] = state


@dataclass
class WorkerCounters:
    consumed: int = 0
    valid: int = 0
    rejected: int = 0
    skipped: int = 0
    batches: int = 0
    process_s: float = 0.0  # validating and computing features
    confirm_s: float = 0.0  # waiting for the broker to acknowledge outputs and state

    def add(self, consumed: int, out: BatchOutput) -> None:
        self.batches += 1
        self.consumed += consumed
        self.valid += out.valid
        self.rejected += out.rejected
        self.skipped += out.skipped


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

    enable_lz4()
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


def build_app(settings: HeadwaterSettings) -> tuple[Any, WorkerCounters]:
    """The Faust app with the feature agent and its table, for the configured domain."""
    codec = make_codec(settings)
    domain = load_domain(codec.catalog, settings.event_schema_file)
    module = load_feature_module(settings.features)
    pipeline = FeaturePipeline(domain, codec, module, settings.topic_prefix)
    fs = module.feature_set
    app = _faust_app(settings)
    raw = app.topic(
        settings.topic("events.raw"),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    table = app.Table(
        table_name(fs),
        default=None,
        key_type=bytes,  # bytes types make Faust use the raw serializer, here and in recovery
        value_type=bytes,
        partitions=settings.topic_partitions,
    )
    counters = WorkerCounters()
    names = {t: settings.topic(t) for t in ("events", "features", "deadletter")}
    changelog = changelog_topic(settings, fs)

    producer = BatchProducer(settings)

    @app.agent(raw, name="features")  # type: ignore[untyped-decorator]
    async def features_agent(stream: Any) -> None:
        store = FaustTableStore(table, fs)
        try:
            async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
                batch = [
                    RawRecord(e.message.partition, e.message.offset, e.message.key, e.message.value)
                    for e in events
                ]
                started = time.perf_counter()
                out = pipeline.process(batch, store, int(time.time() * 1000))
                producer.send((names[r.topic], r.key, r.value, r.partition) for r in out.records)
                processed = time.perf_counter()
                await producer.confirm()  # outputs first: a state never runs ahead of them
                producer.send(
                    (changelog, entity.encode(), _state_bytes(store, entity), partition)
                    for entity, partition in out.changed.items()
                )
                await producer.confirm()
                counters.add(len(batch), out)
                counters.process_s += processed - started
                counters.confirm_s += time.perf_counter() - processed
        except Exception as error:
            # A crashed agent would leave a live but idle worker; stop it so it gets noticed
            # (and restarted, reprocessing from the last committed offsets).
            log.exception("feature agent failed; stopping the worker")
            await app.crash(error)
            raise

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def report() -> None:
        log.info("feature worker: %s", counters)

    return app, counters


def _state_bytes(store: FaustTableStore, entity: str) -> bytes:
    state = store.get(entity)
    if state is None:  # pragma: no cover - the pipeline just put it there
        raise KeyError(entity)
    return state.to_bytes()


def main() -> None:
    import faust

    settings = load_settings()
    app, _ = build_app(settings)
    faust.Worker(app, loglevel="INFO").execute_from_commandline()


if __name__ == "__main__":
    main()
