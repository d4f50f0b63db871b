"""The model loader on a real artifact store with trained bundles (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from headwater.schemas.models import ModelVersion
from headwater.serving.errors import ArtifactRefused, ModelUnavailable
from headwater.serving.loader import ArtifactIndex, ModelLoader
from headwater.trainers.artifacts import ArtifactStore
from tests.serving.modelkit import FEATURES, train_bundle


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def registered(index: ArtifactIndex, version: int, sha256: str) -> None:
    index.apply(
        ModelVersion(
            model="m",
            version=version,
            action="registered",
            artifact_sha256=sha256,
            event_time_ms=version,
        )
    )


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def test_loads_warm_verified_bundles_into_a_bounded_lru(store: ArtifactStore) -> None:
    index = ArtifactIndex()
    bundles = {v: train_bundle(v, "lru", steps=5) for v in (1, 2, 3)}
    for version, bundle in bundles.items():
        registered(index, version, store.put_bytes(bundle.to_bytes()))
    loader = ModelLoader(store, index, capacity=2)
    x = np.zeros((2, len(FEATURES)))
    for version in (1, 2, 1, 3):
        loaded = loader.get("m", version)
        assert np.allclose(loaded.predictor.predict(x), bundles[version].predict(x))
    assert sorted(m.version for m in loader.cached()) == [1, 3]  # 2 was least recently used


def test_refusals_name_the_version_and_are_retried_after_a_while(store: ArtifactStore) -> None:
    index = ArtifactIndex()
    clock = Clock()
    good = train_bundle(1, "refuse", steps=5).to_bytes()
    sha_good = store.put_bytes(good)
    registered(index, 1, sha_good)
    registered(index, 2, store.put_bytes(b"these bytes are no model bundle"))
    loader = ModelLoader(store, index, retry_s=5.0, clock=clock)
    with pytest.raises(ArtifactRefused, match=r"m@2.*does not load as a model"):
        loader.get("m", 2)
    with pytest.raises(ModelUnavailable, match="m@9 is not registered"):
        loader.get("m", 9)

    flipped = good[:100] + bytes([good[100] ^ 0xFF]) + good[101:]
    store.path_of(sha_good).write_bytes(flipped)
    with pytest.raises(ArtifactRefused, match=r"m@1.*hashes to"):
        loader.get("m", 1)
    store.path_of(sha_good).write_bytes(good)  # repaired, but the refusal holds for retry_s
    with pytest.raises(ArtifactRefused):
        loader.get("m", 1)
    clock.now += 5.0
    assert loader.get("m", 1).sha256 == sha_good

    index.apply(ModelVersion(model="m", version=1, action="archived", event_time_ms=9))
    with pytest.raises(ModelUnavailable, match="archived"):
        ModelLoader(store, index).get("m", 1)
