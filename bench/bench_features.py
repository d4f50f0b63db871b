"""The feature pipeline's throughput against its baselines, measured in the same run.

``python -m bench.bench_features [--events N]`` pre-loads N demo transactions (Avro) into
``events.raw`` on a local Apache Kafka of its own (ports from ``HEADWATER_BENCH_PORT_BASE``,
default 31000; or the broker of the ``settings`` given to :func:`run`) and measures:

* **raw**: a confluent-kafka loop — consume, decode and validate, encode a typed event,
  produce — in this process, with fastavro as the Avro codec: the ceiling.
* **raw_native**: the same loop on Headwater's native Avro codec (``native/``), which the
  feature worker uses: shown so the two codecs' share of the ratio is plain.
* **naive_faust**: a Faust agent doing the feature work one event at a time (two table
  updates and a send per event: ``bench.naive_faust_agent``).
* **headwater**: the feature worker (``headwater.streams.worker``) on its default librdkafka engine:
  batched validation, the demo's 17 features, ``events`` + ``features`` records and changelog
  writes per batch.
* **headwater_faust**: the same worker on its Faust engine (Faust's stream delivers the batches).

For each: events/s and CPU-seconds per million events (the worker processes' own CPU, read
from ``/proc`` while they process the backlog; Faust start-up excluded). Then a paced load
through the running Headwater worker gives the p50/p99 event→features latency (the features
record's broker timestamp minus the raw record's). Timings vary with the machine; the ratios
are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Producer, TopicPartition

from headwater.core.settings import HeadwaterSettings, settings_environment
from headwater.demo.generator import DemoConfig, TransactionGenerator
from headwater.infra.event_bus import make_codec
from headwater.infra.kafka_clients import ensure_topics, make_consumer, make_producer, topic_states
from headwater.infra.local_kafka import LocalKafka
from headwater.schemas.domain import load_domain
from headwater.schemas.models import Event, Transaction
from headwater.streams.fast_avro import FastAvro
from headwater.streams.feature_module import load_feature_module
from headwater.streams.validation import EventValidator

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


MODES = ("raw", "raw_native", "naive_faust", "headwater_faust", "headwater")
BASELINES = {  # mode -> its name in the ratios
    "raw": "raw",
    "raw_native": "raw_native_codec",
    "naive_faust": "naive_faust",
    "headwater_faust": "its_faust_engine",
}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else -1.0


def _transactions(n: int, seed: int = 17) -> list[Transaction]:
    generator = iter(TransactionGenerator(DemoConfig(seed=seed, cards=2_000)))
    return [next(generator).transaction for _ in range(n)]


def _isolated(settings: HeadwaterSettings, mode: str) -> HeadwaterSettings:
    isolated = settings.model_copy(
        update={
            "topic_prefix": f"bf-{mode}-{uuid.uuid4().hex[:6]}-",
            "features": "headwater.demo.features",
            "event_schema_file": "",
        }
    )
    ensure_topics(isolated)
    return isolated


def preload(
    settings: HeadwaterSettings, transactions: list[Transaction], producer: Producer | None = None
) -> dict[str, int]:
    """Send the events, each stamped with its send time; the send times by event id. With a
    ``producer`` of the caller's, sends without waiting (the caller flushes)."""
    codec = make_codec(settings)
    own = producer is None
    producer = producer or make_producer(settings, **{"linger.ms": 20})
    topic = settings.topic("events.raw")
    sent = {}
    for tx in transactions:
        now = int(time.time() * 1000)
        value = codec.encode(Transaction.SCHEMA, tx.to_avro())
        while True:
            try:
                producer.produce(topic, value, tx.card_id.encode(), timestamp=now)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        sent[tx.event_id] = now
    if own:
        producer.flush(60)
    return sent


class EndWatcher:
    """How many records a topic holds (the sum of its partitions' end offsets), read through
    one consumer kept open: polling must not cost the measured worker's cores more than a
    few watermark requests (a client per poll took a visible share of them)."""

    def __init__(self, settings: HeadwaterSettings, topic: str) -> None:
        self.settings = settings
        self.consumer = make_consumer(settings, f"bench-watch-{uuid.uuid4().hex[:6]}")
        states = topic_states(settings, [settings.topic(topic)])
        if not states:
            raise RuntimeError(f"topic {settings.topic(topic)} does not exist")
        self.partitions = [TopicPartition(states[0].name, p) for p in range(states[0].partitions)]

    def records(self) -> int:
        timeout = self.settings.kafka_timeout_s
        return sum(self.consumer.get_watermark_offsets(tp, timeout)[1] for tp in self.partitions)

    def close(self) -> None:
        self.consumer.close()


def measure_raw(settings: HeadwaterSettings, n: int, native: bool = False) -> dict[str, float]:
    """Consume, decode and validate, encode an ``Event``, produce: confluent-kafka and fastavro
    (with ``native``, Headwater's native Avro codec in place of fastavro)."""
    codec = make_codec(settings)
    validator = EventValidator(
        load_domain(codec.catalog),
        codec,
        load_feature_module(settings.features).constraints,
        native=native,
    )
    encode = FastAvro(codec, native=native).encode
    consumer = make_consumer(settings, settings.topic("bench-raw"), **{"fetch.min.bytes": 1})
    consumer.subscribe([settings.topic("events.raw")])
    producer = make_producer(settings, **{"linger.ms": 5})
    out = settings.topic("events")
    done = 0
    started = cpu0 = 0.0
    while done < n:
        for message in consumer.consume(1000, timeout=1.0):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(error.str())
            if not done:
                started, cpu0 = time.perf_counter(), _self_cpu()
            checked = validator.validate(
                message.value(), message.partition() or 0, message.offset() or 0
            )
            if not isinstance(checked, list):
                value = encode(Event.SCHEMA, checked)
                while True:
                    try:
                        producer.produce(out, value, message.key())
                        break
                    except BufferError:
                        producer.poll(0.01)
            done += 1
        producer.poll(0)
    producer.flush(60)
    consumer.commit(asynchronous=False)
    seconds, cpu = time.perf_counter() - started, _self_cpu() - cpu0
    consumer.close()
    return _figures(n, seconds, cpu)


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _figures(n: int, seconds: float, cpu: float) -> dict[str, float]:
    return {
        "events": n,
        "seconds": seconds,
        "events_per_s": n / seconds,
        "cpu_s_per_million": cpu / n * 1e6,
    }


@contextmanager
def worker(settings: HeadwaterSettings, module: str) -> Iterator[subprocess.Popen[bytes]]:
    env = settings_environment(settings)
    env["PYTHONPATH"] = str(REPO)
    log = settings.home / f"bench-{module}.log"
    with log.open("ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", module], env=env, cwd=REPO, stdout=out, stderr=out
        )
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def measure_worker(
    settings: HeadwaterSettings, module: str, n: int, timeout_s: float = 300.0
) -> dict[str, float]:
    """A Faust worker over the pre-loaded backlog: from its first output to its last."""
    watcher = EndWatcher(settings, "features")
    try:
        with worker(settings, module) as child:
            deadline = time.monotonic() + timeout_s
            first = 0
            while not (first := watcher.records()):
                _check_alive(child, deadline, module)
                time.sleep(0.01)
            started, cpu0 = time.perf_counter(), _cpu_seconds(child.pid)
            while (done := watcher.records()) < n:
                _check_alive(child, deadline, module)
                time.sleep(0.01)
            seconds, cpu = time.perf_counter() - started, _cpu_seconds(child.pid) - cpu0
    finally:
        watcher.close()
    return _figures(done - first, seconds, cpu)


def _check_alive(child: subprocess.Popen[bytes], deadline: float, module: str) -> None:
    if child.poll() is not None:
        raise RuntimeError(f"{module} exited with {child.returncode}; see its bench log")
    if time.monotonic() > deadline:
        raise RuntimeError(f"{module} did not finish in time")


def measure_latency(settings: HeadwaterSettings, rate: float, seconds: float) -> dict[str, float]:
    """Paced events through a running Headwater worker: event→features latency."""
    with worker(settings, "headwater.streams.worker"):
        # The load's producer sends the warm-up too: its start (metadata, idempotence id)
        # must not count as the worker's latency.
        producer = make_producer(settings, **{"linger.ms": 1})
        warmup = _transactions(50, seed=99)
        preload(settings, warmup, producer)
        producer.flush(60)
        deadline = time.monotonic() + 120
        watcher = EndWatcher(settings, "features")
        while watcher.records() < len(warmup) and time.monotonic() < deadline:
            time.sleep(0.1)
        load = _transactions(int(rate * seconds), seed=5)
        sent: dict[str, int] = {}
        chunk = max(1, int(rate / 20))
        begin = time.perf_counter()
        for i in range(0, len(load), chunk):
            sent.update(preload(settings, load[i : i + chunk], producer))
            producer.poll(0)
            pause = begin + (i + chunk) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)  # flush(pause) would return early: paced means waiting
        producer.flush(60)
        while watcher.records() < len(warmup) + len(load):
            if time.monotonic() > deadline + seconds * 4:
                break
            time.sleep(0.1)
        watcher.close()
    latencies = _feature_latencies(settings, sent)
    return {
        "offered_per_s": rate,
        "events": len(latencies),
        "p50_ms": _percentile(latencies, 50),
        "p90_ms": _percentile(latencies, 90),
        "p99_ms": _percentile(latencies, 99),
        "max_ms": max(latencies, default=-1.0),
    }


def _feature_latencies(settings: HeadwaterSettings, sent: dict[str, int]) -> list[float]:
    codec = make_codec(settings)
    consumer = make_consumer(settings, f"bench-latency-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([settings.topic("features")])
    latencies: list[float] = []
    try:
        while True:
            batch = consumer.consume(1000, timeout=3.0)
            if not batch:
                return latencies
            for message in batch:
                if message.error() is not None:
                    continue
                _, vector = codec.decode(message.value() or b"")
                if vector["event_id"] in sent:
                    latencies.append(float(message.timestamp()[1] - sent[vector["event_id"]]))
    finally:
        consumer.close()


@contextmanager
def own_broker() -> Iterator[HeadwaterSettings]:
    base = int(os.environ.get("HEADWATER_BENCH_PORT_BASE", "31000"))
    with tempfile.TemporaryDirectory(prefix="hw-bench-features-") as home:
        settings = HeadwaterSettings(
            home=Path(home),
            kafka_local_port=base + 92,
            kafka_local_controller_port=base + 93,
            warehouse_host_port=base + 123,
        )
        broker = LocalKafka(settings)
        broker.start()
        try:
            yield settings
        finally:
            broker.stop()


def run(
    n_events: int = 20_000,
    settings: HeadwaterSettings | None = None,
    events: int | None = None,
    latency_rate: float | None = None,
    latency_seconds: float = 5.0,
    modes: tuple[str, ...] = MODES,
) -> dict[str, Any]:
    """Every figure and ratio, measured in this run (``events`` is the bench runner's size).

    Latency is measured at ``latency_rate`` (default 200 events/s) and again at half the
    backlog throughput Headwater just reached; on a shared 2-core machine the second load also
    competes with the load generator and the broker for the same cores."""
    n = events or n_events
    if settings is None:
        with own_broker() as local:
            return run(n, local, None, latency_rate, latency_seconds, modes)
    unknown = set(modes) - set(MODES)
    if unknown or "headwater" not in modes:
        raise ValueError(f"modes {sorted(modes)}: choose among {MODES}, headwater included")
    transactions = _transactions(n)
    figures: dict[str, Any] = {}
    for mode in modes:
        isolated = _isolated(settings, mode)
        preload(isolated, transactions)
        if mode in ("raw", "raw_native"):
            figures[mode] = measure_raw(isolated, n, native=mode == "raw_native")
        elif mode == "naive_faust":
            figures[mode] = measure_worker(isolated, "bench.naive_faust_agent", n)
        else:
            engine = "faust" if mode == "headwater_faust" else "librdkafka"
            engined = isolated.model_copy(update={"stream_engine": engine})
            figures[mode] = measure_worker(engined, "headwater.streams.worker", n)
    rate = latency_rate or 200.0
    figures["latency"] = measure_latency(_isolated(settings, "lat"), rate, latency_seconds)
    half = round(min(2_000.0, figures["headwater"]["events_per_s"] / 2), -1)
    figures["latency_at_half_throughput"] = measure_latency(
        _isolated(settings, "lat-half"), half, latency_seconds
    )
    ours = figures["headwater"]
    ratios: dict[str, float] = {"latency_p99_vs_1s_target": figures["latency"]["p99_ms"] / 1000.0}
    for mode, label in BASELINES.items():
        if mode in figures:
            base = figures[mode]
            ratios[f"headwater_vs_{label}"] = ours["events_per_s"] / base["events_per_s"]
            # CPU per event depends less on what else the machine runs than wall-clock rates.
            ratios[f"cpu_per_event_{label}_vs_headwater"] = (
                base["cpu_s_per_million"] / ours["cpu_s_per_million"]
            )
    figures["ratios"] = ratios
    figures["targets"] = {"vs_naive": 10.0, "vs_raw": 0.5, "p99_ms": 1000.0}
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--latency-rate", type=float, default=None, help="events/s (default 200)")
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated, of {','.join(MODES)}"
    )
    args = parser.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    figures = run(args.events, None, None, args.latency_rate, args.latency_seconds, modes)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
