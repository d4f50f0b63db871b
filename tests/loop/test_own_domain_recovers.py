"""The done criterion of the closed loop, on a domain that is not the demo's.

A user's own schema and feature module (tests/loop/sea), `headwater up`, readings as JSON from a
plain confluent-kafka producer, labels 500 readings late, `headwater train` for the first
version; then river's SEA concept changes part-way. Through the processes `headwater up` runs,
the loop notices, retrains on readings after the change, canaries and promotes, and served
accuracy recovers.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import orjson
import pytest
from confluent_kafka import Producer
from river.datasets import synth

from headwater.core.settings import HeadwaterSettings
from headwater.infra.consumer_lag import sample_lag
from headwater.infra.event_bus import EventBus, make_codec, read_topic
from headwater.infra.supervision import process_log
from headwater.infra.warehouse import HostedWarehouse
from headwater.infra.warehouse_host import host_file, running_host, running_host_pid
from headwater.operate.platform import stop_pid
from headwater.operate.processes import stop_stream_processes
from headwater.schemas.models import (
    DriftAlarm,
    EventModel,
    Label,
    ModelVersion,
    Prediction,
    RetrainRequest,
)
from headwater.trainers.registry import replay_state
from tests.conftest import settings_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SEA = Path(__file__).parent / "sea"
MODEL = "sea"
LABEL_DELAY = 500  # readings between a reading and its label
RATE = 250  # readings per second
E = TypeVar("E", bound=EventModel)


def _env(settings: HeadwaterSettings) -> dict[str, str]:
    env = settings_env(settings)
    env.update(
        HEADWATER_TOPIC_PARTITIONS=str(settings.topic_partitions),
        HEADWATER_EVENT_SCHEMA_FILE=str(SEA / "sea.avsc"),
        HEADWATER_FEATURES="tests.loop.sea.sea_features",
        HEADWATER_SERVING_MODEL=MODEL,
        HEADWATER_RETRAIN_MIN_ROWS="3000",
        HEADWATER_RETRAIN_COOLDOWN_S="120",
        HEADWATER_RETRAIN_TRIALS="0",
        HEADWATER_RETRAIN_SUSTAIN_S="120",
        HEADWATER_CANARY_MIN_OUTCOMES_PER_STEP="50",
    )
    # the user's feature module is importable from the checkout
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH", ""), str(REPO)]))
    return env


def _headwater(settings: HeadwaterSettings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater.cli.main", *args],
        env=_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _wait(
    check: Callable[[], bool],
    timeout_s: float,
    what: str,
    settings: HeadwaterSettings,
    process: str,
) -> None:
    """Wait for ``check``; on timeout, fail with the tail of ``process``'s log (the process
    of ``headwater up`` that should have made it happen)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1.0)
    log = process_log(settings, process)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
    raise AssertionError(f"{what} did not happen within {timeout_s:.0f} s; {log.name}:\n{tail}")


class Application:
    """The user's application: readings as JSON, labels ``LABEL_DELAY`` readings late."""

    def __init__(
        self, settings: HeadwaterSettings, stream: Iterator[tuple[dict[int, float], bool]]
    ):
        self.settings = settings
        self.stream = stream
        self.producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 5})
        self.labels = EventBus(settings)
        self.truth: list[tuple[str, float, int]] = []  # reading id, label, event time
        # Ids of this application's own: the session's warehouse holds other tests' rows.
        self.ids = settings.topic_prefix
        self._sent_labels = 0

    def send(self, n: int) -> None:
        began = time.monotonic()
        for k in range(n):
            x, y = next(self.stream)
            i = len(self.truth)
            reading_id, sensor, at_ms = self.reading(i), self.sensor(i), int(time.time() * 1000)
            reading = {"reading_id": reading_id, "sensor_id": sensor, "at_ms": at_ms}
            reading.update(x1=x[0], x2=x[1], x3=x[2])
            self.producer.produce(self.settings.topic("events.raw"), orjson.dumps(reading), sensor)
            self.truth.append((reading_id, float(y), at_ms))
            self.producer.poll(0)
            if len(self.truth) - self._sent_labels > LABEL_DELAY:
                self._label(self._sent_labels)
            ahead = began + (k + 1) / RATE - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        self.producer.flush(30)
        self.labels.flush()

    def reading(self, i: int) -> str:
        return f"{self.ids}r{i}"

    def sensor(self, i: int) -> str:
        return f"{self.ids}s{i % 40}"

    def label_the_rest(self) -> None:
        while self._sent_labels < len(self.truth):
            self._label(self._sent_labels)
        self.labels.flush()

    def _label(self, i: int) -> None:
        reading_id, label, at_ms = self.truth[i]
        self.labels.send(
            "labels",
            Label(
                request_id=reading_id,
                entity_id=self.sensor(i),
                event_id=reading_id,
                label=label,
                event_time_ms=at_ms,
                labeled_at_ms=int(time.time() * 1000),
            ),
        )
        self._sent_labels += 1


def _events(settings: HeadwaterSettings, topic: str, model: type[E]) -> list[E]:
    codec = make_codec(settings)
    out: list[E] = []
    for record in read_topic(settings, topic, group=f"check-{time.time_ns()}", idle_timeout_s=5):
        _, fields = codec.decode(record.value, model.SCHEMA)
        out.append(model.from_avro(fields))
    return out


@contextlib.contextmanager
def _platform(settings: HeadwaterSettings) -> Iterator[HostedWarehouse]:
    """`headwater up` for this test's prefix; everything it started is stopped afterwards."""
    started = _headwater(settings, "up", "--json")
    assert started.returncode == 0, started.stderr
    try:
        address = running_host(settings)
        assert address is not None
        yield HostedWarehouse(address.url, token=address.token)
    finally:
        stop_stream_processes(settings)
        host = running_host_pid(settings)
        if host is not None:
            stop_pid(host)
            host_file(settings).unlink(missing_ok=True)


def _first_version(
    settings: HeadwaterSettings, app: Application, warehouse: HostedWarehouse, readings: int
) -> None:
    """The user's first steps: readings and their labels, `headwater train`, served."""
    app.send(readings)
    app.label_the_rest()
    db, mine = warehouse.database, f"LIKE '{app.ids}%'"

    def landed() -> bool:
        labels = f"SELECT count() FROM {db}.labels FINAL WHERE request_id {mine}"
        features = f"SELECT count() FROM {db}.features FINAL WHERE entity_id {mine}"
        counts = [int(warehouse.query(query).scalar()) for query in (labels, features)]
        return min(counts) >= readings

    _wait(landed, 300, "the first readings' labels and features landed", settings, "sink")
    # As a user would: trained on the application's own readings (the session's warehouse
    # holds other tests' rows of this feature set too).
    since = str(app.truth[0][2])
    trained = _headwater(
        settings, "train", "--model", MODEL, "--epochs", "8", "--since-ms", since, "--json"
    )
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["version"] == 1
    _wait(
        lambda: any(
            v.action == "promoted" for v in _events(settings, "model-versions", ModelVersion)
        ),
        300,
        "the first version served",
        settings,
        "loop",
    )


def _one_prediction_each(app: Application, predictions: Iterable[Prediction]) -> list[Prediction]:
    served = [p for p in predictions if p.route != "shadow"]
    per_reading = Counter(p.request_id for p in served)
    assert len(per_reading) == len(app.truth) and set(per_reading.values()) == {1}
    return served


def _settings(kafka: HeadwaterSettings, unique: str, tmp_path: Path) -> HeadwaterSettings:
    return kafka.model_copy(
        update={"topic_prefix": f"sea-{unique}-", "artifact_store": str(tmp_path / "store")}
    )


def test_a_concept_change_on_a_users_domain_recovers_on_its_own(
    kafka: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    settings = _settings(kafka, unique, tmp_path)
    first, change, after = 6_000, 12_000, 40_000
    stream = iter(
        synth.ConceptDriftStream(
            stream=synth.SEA(variant=1, seed=1),
            drift_stream=synth.SEA(variant=2, seed=2),
            position=change,
            width=100,  # over ~100 readings: river's sigmoid overflows below position / 170
            seed=3,
        )
    )
    app = Application(settings, stream)
    with _platform(settings) as warehouse:
        _first_version(settings, app, warehouse, first)
        app.send(change + after - first)
        app.label_the_rest()
        _wait(
            lambda: replay_state(settings).champion(MODEL) not in (None, 1),
            600,
            "a retrained version promoted",
            settings,
            "loop",
        )
        predictions = _events(settings, "predictions", Prediction)
    served = _one_prediction_each(app, predictions)

    alarms = [a for a in _events(settings, "drift", DriftAlarm) if a.kind == "concept"]
    change_ms = app.truth[change][2]
    index = {at: i for i, (_, _, at) in enumerate(app.truth)}
    detected = [a for a in alarms if a.window_end_ms >= change_ms]
    assert detected, "the change was not detected"
    delay = min(index.get(a.window_end_ms, len(app.truth)) for a in detected) - change
    assert delay < 2_000, f"detected {delay} readings after the change"
    assert not [a for a in alarms if a.window_end_ms < change_ms], "an alarm before the change"

    requests = _events(settings, "retrain-requests", RetrainRequest)
    assert requests and requests[0].since_ms >= change_ms - 5_000

    versions = _events(settings, "model-versions", ModelVersion)
    registered = [v.version for v in versions if v.action == "registered"]
    assert len(registered) == len(set(registered)), registered
    state = replay_state(settings)
    assert state.rejected == []
    champion = state.champion(MODEL)
    assert champion is not None
    steps = [(v.action, v.actor) for v in versions if v.version == champion]
    assert state.version(MODEL, champion).stage == "promoted", steps
    tried = steps.index(("canary", "canary-controller"))
    assert tried < steps.index(("promoted", "canary-controller")), steps
    assert int(state.version(MODEL, champion).signature["data_start_ms"]) >= change_ms - 5_000

    truth = {rid: label for rid, label, _ in app.truth}
    order = {rid: i for i, (rid, _, _) in enumerate(app.truth)}

    def accuracy(lo: int, hi: int) -> float:
        hits = [
            float((p.output >= 0.5) == (truth[p.request_id] > 0.5))
            for p in served
            if lo <= order[p.request_id] < hi
        ]
        return sum(hits) / len(hits)

    before = accuracy(first, change)
    recovered = accuracy(change + 5_000, len(app.truth))
    serving = sorted(order[p.request_id] for p in served if p.version == champion)
    took_over = min(
        order[p.request_id] for p in served if p.version == champion and p.route == "champion"
    )
    new_model = sum(
        float((p.output >= 0.5) == (truth[p.request_id] > 0.5))
        for p in served
        if p.version == champion
    ) / len(serving)
    figures = (
        f"accuracy {before:.3f} before the change, {recovered:.3f} from change + 5,000; "
        f"detected {delay} readings after the change; version {champion} first served "
        f"{serving[0] - change} readings after it, took over at {took_over - change}; its own "
        f"accuracy {new_model:.3f} on {len(serving)} readings"
    )
    print(figures)  # the measured figures, shown with -s
    assert recovered >= 0.95 * before, figures


def test_a_stationary_stream_asks_for_no_retrain(
    kafka: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    settings = _settings(kafka, unique, tmp_path)
    first, more = 6_000, 20_000
    app = Application(settings, iter(synth.SEA(variant=1, seed=4)))
    with _platform(settings) as warehouse:
        _first_version(settings, app, warehouse, first)
        app.send(more)
        app.label_the_rest()
        loop_group = f"{settings.topic_prefix}headwater-loop"

        def loop_caught_up() -> bool:
            lags = sample_lag(settings, [loop_group])
            wanted = {settings.topic("predictions"), settings.topic("labels")}
            return {s.topic for s in lags} >= wanted and all(s.lag == 0 for s in lags)

        _wait(
            lambda: len(_events(settings, "predictions", Prediction)) >= first + more,
            300,
            "every reading scored",
            settings,
            "feature_worker",  # it scores in its process: what the standalone scorer leaves
        )
        _wait(
            loop_caught_up,
            300,
            "the loop read every prediction and label",
            settings,
            "loop",
        )
        predictions = _events(settings, "predictions", Prediction)
    _one_prediction_each(app, predictions)
    assert _events(settings, "retrain-requests", RetrainRequest) == []
    # Each error detector has a small false-alarm rate, so one marginal alarm on 20,000
    # stationary readings can happen (a Page-Hinkley 56.0 against 55.6 was seen once); the
    # policy asks for a retrain only when alarms agree, which is what must never happen here.
    concept = [a for a in _events(settings, "drift", DriftAlarm) if a.kind == "concept"]
    assert len(concept) <= 1, concept
