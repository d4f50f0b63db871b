"""A retrained version goes to the canary; only a model's very first version skips it."""

from __future__ import annotations

from pathlib import Path

import pytest

from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.errors import IllegalTransition
from headwater.trainers.registry import ModelRegistry
from headwater.trainers.registry_log import MemoryLog
from headwater.trainers.retrain import hand_to_canary


def _registries(tmp_path: Path) -> tuple[ArtifactStore, ModelRegistry, ModelRegistry]:
    store, log = ArtifactStore(tmp_path), MemoryLog()
    cli, worker = log.writer(), log.writer()
    return store, ModelRegistry(store, cli, log=cli), ModelRegistry(store, worker, log=worker)


def test_a_stale_worker_still_canaries_its_candidate(tmp_path: Path) -> None:
    store, cli, worker = _registries(tmp_path)
    worker.catch_up()  # the worker started before the CLI trained the first version
    cli.register("m", store.put_bytes(b"v1"), actor="cli")
    cli.promote("m", 1, reason="first", actor="canary-controller")
    version = worker.register("m", store.put_bytes(b"v2"), actor="retrain-worker").version
    assert version == 2
    assert hand_to_canary(worker, "m", version, "drift") == "canary"
    assert cli.catch_up().version("m", 2).stage == "canary"
    assert cli.state.champion("m") == 1


def test_a_later_version_is_canaried_even_before_the_first_is_promoted(tmp_path: Path) -> None:
    store, cli, worker = _registries(tmp_path)
    cli.register("m", store.put_bytes(b"v1"), actor="cli")
    version = worker.register("m", store.put_bytes(b"v2"), actor="retrain-worker").version
    assert hand_to_canary(worker, "m", version, "drift") == "canary"


def test_only_the_very_first_version_is_promoted_at_once(tmp_path: Path) -> None:
    store, _, worker = _registries(tmp_path)
    version = worker.register("m", store.put_bytes(b"v1"), actor="retrain-worker").version
    assert hand_to_canary(worker, "m", version, "first") == "promoted"
    assert worker.state.champion("m") == 1


def test_coalesced_requests_train_from_the_latest_change() -> None:
    from headwater.schemas.models import RetrainRequest
    from headwater.trainers.retrain_queue import RetrainQueue

    def request(n: int, since: int) -> RetrainRequest:
        return RetrainRequest(
            request_id=f"r{n}", model="m", reason="drift", requested_at_ms=n, since_ms=since
        )

    queue = RetrainQueue()
    first = queue.submit(request(1, 500), 0, 1)
    assert first is not None and first.since_ms == 500
    queue.submit(request(2, 900), 0, 2)
    queue.submit(request(3, 0), 0, 3)  # a person's request: all rows, but the change stands
    following = queue.finish("m")
    assert following is not None and following.since_ms == 900


def test_a_late_hand_over_never_canaries_the_champion(tmp_path: Path) -> None:
    store, loop, worker = _registries(tmp_path)
    loop.register("m", store.put_bytes(b"v1"), actor="cli")
    loop.promote("m", 1, reason="first", actor="canary-controller")
    version = worker.register("m", store.put_bytes(b"v2"), actor="retrain-worker").version
    # the canary controller tries and promotes version 2 before the worker hands it over
    loop.canary("m", version, reason="step 0.1", actor="canary-controller")
    loop.promote("m", version, reason="not worse", actor="canary-controller")
    assert hand_to_canary(worker, "m", version, "drift") == "promoted"
    assert [e.action for e in worker.log.read_new()] == []  # type: ignore[union-attr]
    # and the fold refuses a canary of the champion from anyone
    with pytest.raises(IllegalTransition, match="m@2 is the champion"):
        worker.canary("m", version, reason="late", actor="retrain-worker")
