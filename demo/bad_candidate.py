"""``headwater demo --bad-candidate``: an operator pushes a model that is honestly worse into
canary, and the platform's canary controller must roll it back.

The model is real — the trainers' own training set from the warehouse and their own
:class:`~headwater.trainers.training.Trainer` — but it learns from every label inverted. It is
stored, registered and put in ``canary`` through the registry, exactly as an operator deploying
a model of their own would; nothing here decides anything the loop decides.
"""

from __future__ import annotations

from headwater.core.settings import HeadwaterSettings
from headwater.infra.warehouse import Warehouse
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.dataset import TrainingSet, training_span
from headwater.trainers.pipeline import resolve_feature_set, signature_of
from headwater.trainers.point_in_time import DatasetSpec, build_training_set
from headwater.trainers.registry import ModelRegistry
from headwater.trainers.registry_state import VersionState
from headwater.trainers.training import TrainConfig, Trainer

ACTOR = "headwater-demo"
REASON = "--bad-candidate: an operator's model trained on inverted labels"


def inverted(data: TrainingSet) -> TrainingSet:
    """The same rows with every binary label inverted.

    >>> import numpy as np
    >>> x = np.zeros((2, 1))
    >>> data = TrainingSet(["a"], x, np.array([0.0, 1.0]), x, np.array([1.0, 1.0]), {})
    >>> inverted(data).train_y.tolist(), inverted(data).valid_y.tolist()
    ([1.0, 0.0], [0.0, 0.0])
    """
    return TrainingSet(
        data.feature_names,
        data.train_x,
        1.0 - data.train_y,
        data.valid_x,
        1.0 - data.valid_y,
        {**data.lineage, "sabotage": "labels inverted"},
    )


def push_bad_candidate(
    settings: HeadwaterSettings,
    warehouse: Warehouse,
    model: str,
    *,
    start_ms: int,
    end_ms: int,
    seed: int,
    epochs: int = 40,
) -> VersionState:
    """Train on inverted labels, register the bundle and put it in canary; the new version."""
    feature_set, names = resolve_feature_set(settings, "")
    spec = DatasetSpec(model, feature_set, 0, start_ms, end_ms, 0, names)
    data = inverted(build_training_set(warehouse, spec))
    result = Trainer(TrainConfig.from_params({"epochs": epochs, "seed": seed}), data).fit()
    bundle = result.bundle
    bundle.metadata.update(model=model, **training_span(data.lineage))
    store = ArtifactStore.from_settings(settings)
    dataset_sha = store.put_bytes(data.to_bytes())
    registry = ModelRegistry.open(settings)
    version = registry.register(
        model,
        store.put_bytes(bundle.to_bytes()),
        metrics={k: v for k, v in result.history[-1].items() if v == v} if result.history else {},
        signature=signature_of(bundle, data, dataset_sha),
        reason=REASON,
        actor=ACTOR,
    )
    return registry.canary(model, version.version, reason=REASON, actor=ACTOR)
