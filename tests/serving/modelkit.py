"""Real tiny torch models for the serving tests: trained here, registered through the registry.

Each bundle is a trained MLP (trainers' model family) whose artifact goes to the artifact store
and whose version is registered with :class:`~headwater.trainers.registry.ModelRegistry`, exactly as
training does; ``tag`` makes the artifact's bytes (and so its sha256) unique to the test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import numpy as np
import torch

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.schemas.models import FeatureVector
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.model_family import (
    MLPConfig,
    ModelBundle,
    Normalizer,
    build_network,
    loss_for,
)
from headwater.trainers.registry import ModelRegistry

FEATURES = ("amount", "velocity", "distance")


def train_bundle(
    seed: int, tag: str, steps: int = 40, features: tuple[str, ...] = FEATURES
) -> ModelBundle:
    """A small MLP trained on a synthetic fraud rule (the first two features large)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, len(features)))
    y = ((x[:, 0] + x[:, 1]) > 0.5).astype(np.float32)
    torch.manual_seed(seed)
    config = MLPConfig(width=8, depth=1)
    network = build_network(config, len(features))
    normalizer = Normalizer.fit(x)
    inputs, targets = torch.from_numpy(normalizer.apply(x)), torch.from_numpy(y)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.05)
    loss = loss_for(config.task)
    for _ in range(steps):
        optimizer.zero_grad()
        loss(network(inputs), targets).backward()
        optimizer.step()
    return ModelBundle.create(
        network, config, features, x, normalizer, metadata={"tag": tag, "seed": str(seed)}
    )


def open_registry(settings: HeadwaterSettings) -> ModelRegistry:
    return ModelRegistry(ArtifactStore.from_settings(settings), EventBus(settings))


def register_versions(
    settings: HeadwaterSettings,
    model: str,
    tag: str,
    count: int,
    features: tuple[str, ...] = FEATURES,
) -> tuple[ModelRegistry, dict[int, ModelBundle]]:
    """Train and register ``count`` versions of ``model``; returns them by version."""
    registry = open_registry(settings)
    bundles: dict[int, ModelBundle] = {}
    for seed in range(count):
        bundle = train_bundle(seed, tag, features=features)
        sha256 = registry.store.put_bytes(bundle.to_bytes())
        state = registry.register(model, sha256, run_id=f"run-{tag}-{seed}", actor="test")
        bundles[state.version] = bundle
    return registry, bundles


def feature_vectors(tag: str, count: int, entities: int = 50) -> list[FeatureVector]:
    rng = np.random.default_rng(7)
    now = int(time.time() * 1000)
    return [
        FeatureVector(
            entity_id=f"card-{tag}-{i % entities}",
            feature_set="fraud",
            feature_set_version=1,
            event_id=f"ev-{tag}-{i}",
            event_time_ms=now,
            computed_at_ms=now,
            values={name: float(v) for name, v in zip(FEATURES, rng.normal(size=3), strict=True)},
        )
        for i in range(count)
    ]


def send_all(settings: HeadwaterSettings, topic: str, events: Iterable[FeatureVector]) -> None:
    bus = EventBus(settings)
    for event in events:
        bus.send(topic, event)
    bus.flush()


class Sabotaged:
    """A real trained model that can be told to raise (with ``error``) or to hang until
    ``release`` is set."""

    def __init__(
        self,
        bundle: ModelBundle,
        release: threading.Event,
        error: Exception | None = None,
    ) -> None:
        self.bundle = bundle
        self.feature_names = bundle.feature_names
        self.mode = "ok"
        self.release = release
        self.error = error or RuntimeError("weights exploded")

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self.mode == "raise":
            raise self.error
        if self.mode == "hang":
            self.release.wait()
        return self.bundle.predict(features)
