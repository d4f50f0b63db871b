"""Version numbers are unique per model across writers: the fence, the catch-up, the read-back.

Unit tests run several registries on one in-memory log with Kafka's fencing rule; the
integration test runs two OS processes registering at the same moment on the real broker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.kafka_clients import ensure_topics
from headwater.schemas.models import ModelVersion
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.errors import RegistryError
from headwater.trainers.registry import ModelRegistry, replay_state
from headwater.trainers.registry_log import Fence, MemoryLog, MemoryLogWriter
from tests.conftest import settings_env


def _registry(store: ArtifactStore, writer: MemoryLogWriter) -> ModelRegistry:
    return ModelRegistry(store, writer, log=writer)


class _Racing(MemoryLogWriter):
    """A writer that lets ``race`` run once between taking its fence and committing."""

    def __init__(self, log: MemoryLog, race: Callable[[], object], fenced: bool = True) -> None:
        super().__init__(log)
        self.race: Callable[[], object] | None = race
        self.fenced = fenced

    def fence(self, model: str) -> Fence:
        inner = super().fence(model) if self.fenced else _Unfenced(self.log)
        return _RaceThenCommit(self, inner)


class _RaceThenCommit:
    def __init__(self, writer: _Racing, inner: Fence) -> None:
        self.writer, self.inner = writer, inner

    def commit(self, event: ModelVersion) -> None:
        race, self.writer.race = self.writer.race, None
        if race is not None:
            race()
        self.inner.commit(event)


class _Unfenced:
    """A writer that skips the fence (what a stale writer did before)."""

    def __init__(self, log: MemoryLog) -> None:
        self.log = log

    def commit(self, event: ModelVersion) -> None:
        self.log.events.append(event)


def test_a_writer_catches_up_before_numbering(tmp_path: Path) -> None:
    store, log = ArtifactStore(tmp_path), MemoryLog()
    cli, worker = _registry(store, log.writer()), _registry(store, log.writer())
    worker.catch_up()  # the worker's view is taken before the CLI registers
    assert cli.register("m", store.put_bytes(b"one"), actor="cli").version == 1
    assert worker.register("m", store.put_bytes(b"two"), actor="worker").version == 2
    assert [e.version for e in log.events] == [1, 2]


def test_a_writer_fenced_between_reading_and_committing_takes_the_next_number(
    tmp_path: Path,
) -> None:
    store, log = ArtifactStore(tmp_path), MemoryLog()
    other = _registry(store, log.writer())
    racing = _registry(
        store, _Racing(log, lambda: other.register("m", store.put_bytes(b"a"), actor="other"))
    )
    state = racing.register("m", store.put_bytes(b"b"), actor="racing")
    assert state.version == 2 and state.artifact_sha256 == store.put_bytes(b"b")
    registered = [(e.version, e.actor) for e in log.events if e.action == "registered"]
    assert registered == [(1, "other"), (2, "racing")]


def test_an_unfenced_duplicate_is_refused_by_the_fold_and_named(tmp_path: Path) -> None:
    store, log = ArtifactStore(tmp_path), MemoryLog()
    other = _registry(store, log.writer())
    stale = _registry(
        store,
        _Racing(log, lambda: other.register("m", store.put_bytes(b"a"), actor="x"), fenced=False),
    )
    with pytest.raises(RegistryError, match=r"m@1 was refused.*next version of 'm' is 2"):
        stale.register("m", store.put_bytes(b"b"), actor="stale")
    # Every reader's fold keeps the first registration of number 1.
    fold = _registry(store, log.writer()).catch_up()
    assert fold.version("m", 1).actor == "x" and len(fold.rejected) == 1


class _LateMarker(MemoryLogWriter):
    """A read-committed reader before the commit marker lands: the first ``hidden`` reads after
    each commit stop short of what was committed."""

    def __init__(self, log: MemoryLog, hidden: int) -> None:
        super().__init__(log)
        self.hidden, self.left = hidden, 0
        self.reads = 0

    def fence(self, model: str) -> Fence:
        self.left = self.hidden
        return super().fence(model)

    def read_new(self) -> list[ModelVersion]:
        self.reads += 1
        if self.left > 0 and len(self.log.events) > self.position:
            self.left -= 1
            new = self.log.events[self.position : -1]  # the newest not visible yet
            self.position += len(new)
            return list(new)
        return super().read_new()


def test_a_commit_read_back_before_its_marker_lands_is_read_again(tmp_path: Path) -> None:
    store, log = ArtifactStore(tmp_path), MemoryLog()
    late = _LateMarker(log, hidden=3)
    registry = ModelRegistry(store, late, log=late, confirm_timeout_s=5.0)
    assert registry.register("m", store.put_bytes(b"a"), actor="x").version == 1
    assert late.reads >= 4  # the catch-up before numbering, three short reads, then the event


def test_a_commit_never_read_back_fails_naming_the_wait(tmp_path: Path) -> None:
    store, log = ArtifactStore(tmp_path), MemoryLog()
    late = _LateMarker(log, hidden=10**6)
    registry = ModelRegistry(store, late, log=late, confirm_timeout_s=0.2)
    with pytest.raises(RegistryError, match=r"m@1 was published but .* within 0.2 s"):
        registry.register("m", store.put_bytes(b"a"), actor="x")


def test_transitions_see_what_other_writers_did(tmp_path: Path) -> None:
    store, log = ArtifactStore(tmp_path), MemoryLog()
    worker, loop = _registry(store, log.writer()), _registry(store, log.writer())
    worker.register("m", store.put_bytes(b"one"), actor="cli")
    loop.promote("m", 1, reason="first", actor="loop")
    two = worker.register("m", store.put_bytes(b"two"), actor="worker")
    assert worker.state.champion("m") == 1  # caught up on the loop's promotion
    worker.canary("m", two.version, reason="retrain", actor="worker")
    assert loop.catch_up().aliases("m") == {"champion": 1, "challenger": 2}


_REGISTER = """
import json, sys, time
from headwater.core.settings import load_settings
from headwater.trainers.registry import ModelRegistry
registry = ModelRegistry.open(load_settings())
name, start_at, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
shas = [registry.store.put_bytes(f"{name}-{i}".encode()) for i in range(count)]
time.sleep(max(0.0, start_at - time.time()))
got = [registry.register("m", sha, actor=name).version for sha in shas]
print(json.dumps(dict(zip(shas, got))))
"""


@pytest.mark.integration
def test_two_processes_registering_at_once_never_share_a_number(
    kafka: HeadwaterSettings, unique: str, tmp_path: Path
) -> None:
    settings = kafka.model_copy(
        update={"topic_prefix": f"reglog-{unique}-", "artifact_store": str(tmp_path)}
    )
    ensure_topics(settings)
    start_at = time.time() + 15  # both processes have opened their registry by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _REGISTER, name, str(start_at), "3"],
            env=settings_env(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("writer-a", "writer-b")
    ]
    outputs = [proc.communicate(timeout=240) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    numbers: dict[str, int] = {}
    for out, _ in outputs:
        numbers.update(json.loads(out.strip().splitlines()[-1]))
    assert sorted(numbers.values()) == [1, 2, 3, 4, 5, 6]
    state = replay_state(settings)
    assert state.rejected == [] and state.undecodable == []
    assert {v.artifact_sha256: v.version for v in state.versions("m")} == numbers
