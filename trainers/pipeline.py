"""Training a model end to end: point-in-time dataset → single run or search → registered version.

:func:`train_model` is what ``headwater train`` and the retrain worker call. Every step leaves
a record: the dataset and the bundle go to the artifact store, the run (and each trial) to
``runs`` and the warehouse, the new version to ``model-versions``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.infra.sql_literals import render
from headwater.infra.warehouse import Warehouse
from headwater.schemas.models import ParamValue
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.dataset import TrainingSet, training_span
from headwater.trainers.distributed import run_distributed
from headwater.trainers.errors import DatasetError, SearchError
from headwater.trainers.job import JobResult
from headwater.trainers.model_family import ModelBundle, load_bundle
from headwater.trainers.point_in_time import DatasetSpec, build_training_set
from headwater.trainers.registry import ModelRegistry
from headwater.trainers.registry_state import VersionState
from headwater.trainers.search import Objective, PriorTrial, SamplerName, SearchBudget, StudyDriver
from headwater.trainers.search_space import SearchSpace, default_space
from headwater.trainers.tracking import (
    RunTracker,
    TeePublisher,
    WarehouseRecorder,
    code_revision,
    new_run_id,
)
from headwater.trainers.training import TrainConfig, Trainer, fingerprint_of
from headwater.trainers.trial_worker import local_workers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRequest:
    """What to train. ``trials`` 0 trains once; N runs a search of N trials."""

    model: str = "demo"
    feature_set: str = ""  # "": the one HEADWATER_FEATURES declares
    trials: int = 0
    workers: int = 2  # local trial workers to start (0: rely on workers running elsewhere)
    parallelism: int = 0  # trials in flight at once (0: one per started worker, at least one)
    nproc: int = 1
    epochs: int = 8
    sampler: SamplerName = "tpe"
    objectives: tuple[Objective, ...] = (Objective(),)
    start_ms: int = 0
    end_ms: int = 0
    max_feature_age_ms: int | None = None  # None: HEADWATER_TRAINING_MAX_FEATURE_AGE_MS
    wall_time_s: float = 1800.0
    trial_timeout_s: float = 300.0
    seed: int = 0
    warm_start: bool = True
    params: dict[str, ParamValue] = field(default_factory=dict)
    reason: str = "manual"
    actor: str = "cli"


@dataclass(frozen=True)
class TrainOutcome:
    model: str
    version: int
    run_id: str
    study: str
    metrics: dict[str, float]
    artifacts: dict[str, str]
    lineage: dict[str, str]
    trials: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        lineage = {k: v for k, v in self.lineage.items() if k != "query"}
        return {**self.__dict__, "lineage": lineage}


def resolve_feature_set(settings: HeadwaterSettings, name: str) -> tuple[str, tuple[str, ...]]:
    """The feature set's name and feature order: as given, or from ``HEADWATER_FEATURES``."""
    if name:
        return name, ()
    from headwater.streams.errors import StreamsError
    from headwater.streams.feature_module import load_feature_module

    try:
        declared = load_feature_module(settings.features).feature_set
    except StreamsError as error:
        raise DatasetError(f"{error}; or pass --feature-set NAME") from None
    return declared.name, tuple(declared.names)


def signature_of(bundle: ModelBundle, data: TrainingSet, dataset_sha: str) -> dict[str, str]:
    return {
        "inputs": ",".join(bundle.feature_names),
        "output": "probability" if bundle.config.task == "binary" else "value",
        "feature_set": data.lineage.get("feature_set", ""),
        "feature_set_versions": data.lineage.get("feature_set_versions", ""),
        "dataset_sha256": dataset_sha,
        # what it was trained on: the rows' event-time span and count
        **training_span(data.lineage),
        "rows": str(data.rows),
    }


def train_model(
    settings: HeadwaterSettings,
    request: TrainRequest,
    warehouse: Warehouse,
    *,
    bus: EventBus | None = None,
    registry: ModelRegistry | None = None,
) -> TrainOutcome:
    """Build the dataset, train (once or by search), store artifacts, register the result."""
    feature_set, names = resolve_feature_set(settings, request.feature_set)
    age = request.max_feature_age_ms
    spec = DatasetSpec(
        request.model,
        feature_set,
        0,
        request.start_ms,
        request.end_ms,
        0,
        names,
        max_feature_age_ms=settings.training_max_feature_age_ms if age is None else age,
    )
    data = build_training_set(warehouse, spec)
    span = training_span(data.lineage)
    log.info(
        "training %s started: %d rows, event time %s to %s (from %s), %s",
        request.model,
        data.rows,
        span.get("data_start_ms", "?"),
        span.get("data_end_ms", "?"),
        request.start_ms or "the beginning",
        f"{request.trials} trials" if request.trials else "one run",
    )
    began = time.monotonic()
    store = ArtifactStore.from_settings(settings)
    dataset_sha = store.put_bytes(data.to_bytes())
    bus = bus or EventBus(settings)
    registry = registry or ModelRegistry.open(settings)
    recorder = WarehouseRecorder(warehouse)
    lineage = {**data.lineage, "dataset_sha256": dataset_sha}
    run_id = new_run_id(request.model)
    params: dict[str, ParamValue] = {"trials": request.trials, "nproc": request.nproc}
    tracker = RunTracker(
        TeePublisher([bus, recorder]),
        run_id,
        request.model,
        params=params,
        lineage=lineage,
        revision=code_revision(),
    )
    tracker.start(request.reason)
    try:
        if request.trials > 0:
            outcome = _search(settings, request, data, dataset_sha, tracker, registry, warehouse)
        else:
            outcome = _single(settings, request, data, dataset_sha, tracker, registry)
    except BaseException as error:
        tracker.fail(f"{type(error).__name__}: {error}")
        raise
    log.info(
        "training %s finished in %.1f s: version %d, %s",
        request.model,
        time.monotonic() - began,
        outcome.version,
        ", ".join(f"{k}={v:.4g}" for k, v in sorted(outcome.metrics.items())),
    )
    return outcome


def _single(
    settings: HeadwaterSettings,
    request: TrainRequest,
    data: TrainingSet,
    dataset_sha: str,
    tracker: RunTracker,
    registry: ModelRegistry,
) -> TrainOutcome:
    config = TrainConfig.from_params(
        {**request.params, "epochs": request.epochs, "seed": request.seed}
    )
    tracker.params.update(config.params())
    # Named by what is trained, not by the run: the same command re-run after a kill resumes.
    checkpoint = (
        settings.home / "checkpoints" / f"{request.model}-{fingerprint_of(config, data)}.pt"
    )
    if request.nproc > 1:
        bundle, history = _train_distributed(settings, request.nproc, config, data, checkpoint)
        for epoch, metrics in enumerate(history, start=1):
            tracker.on_epoch(epoch, metrics)
    else:
        result = Trainer(config, data, checkpoint=checkpoint, listener=tracker).fit()
        bundle, history = result.bundle, result.history
    checkpoint.unlink(missing_ok=True)
    metrics = dict(history[-1]) if history else {}
    bundle.metadata.update(run_id=tracker.run_id, model=request.model, dataset_sha256=dataset_sha)
    bundle.metadata.update(training_span(data.lineage))
    artifacts = _store_artifacts(registry.store, bundle, dataset_sha)
    tracker.complete(metrics, artifacts)
    version = _register(
        registry,
        request,
        tracker.run_id,
        artifacts["bundle"],
        metrics,
        signature_of(bundle, data, dataset_sha),
    )
    return TrainOutcome(
        request.model, version.version, tracker.run_id, "", metrics, artifacts, tracker.lineage, {}
    )


def _train_distributed(
    settings: HeadwaterSettings,
    nproc: int,
    config: TrainConfig,
    data: TrainingSet,
    checkpoint: Path,
) -> tuple[ModelBundle, list[dict[str, float]]]:
    with tempfile.TemporaryDirectory(prefix="hw-ddp-") as scratch:
        folder = Path(scratch)
        (folder / "data.npz").write_bytes(data.to_bytes())
        args = ["--dataset", str(folder / "data.npz"), "--config", json.dumps(config.params())]
        args += ["--out", str(folder / "out"), "--checkpoint", str(checkpoint)]
        args += ["--device", config.device]
        run_distributed(nproc, args)
        result = JobResult.from_json((folder / "out" / "result.json").read_text())
        bundle = load_bundle((folder / "out" / "bundle.pt").read_bytes())
    return bundle, result.history


def _store_artifacts(store: ArtifactStore, bundle: ModelBundle, dataset_sha: str) -> dict[str, str]:
    reference = {name: ref.__dict__ for name, ref in bundle.reference.items()}
    stats = {
        "feature_names": list(bundle.feature_names),
        "mean": bundle.normalizer.mean.tolist(),
        "std": bundle.normalizer.std.tolist(),
    }
    return {
        "bundle": store.put_bytes(bundle.to_bytes()),
        "reference": store.put_bytes(json.dumps(reference, sort_keys=True).encode()),
        "preprocessing": store.put_bytes(json.dumps(stats, sort_keys=True).encode()),
        "dataset": dataset_sha,
    }


def _register(
    registry: ModelRegistry,
    request: TrainRequest,
    run_id: str,
    bundle_sha: str,
    metrics: dict[str, float],
    signature: dict[str, str],
) -> VersionState:
    return registry.register(
        request.model,
        bundle_sha,
        run_id=run_id,
        metrics={k: v for k, v in metrics.items() if v == v},  # NaN metrics are not metrics
        signature=signature,
        reason=request.reason,
        actor=request.actor,
    )


def _search(
    settings: HeadwaterSettings,
    request: TrainRequest,
    data: TrainingSet,
    dataset_sha: str,
    tracker: RunTracker,
    registry: ModelRegistry,
    warehouse: Warehouse,
) -> TrainOutcome:
    space = default_space(epochs=request.epochs)
    priors = (
        prior_trials(warehouse, request.model, space, request.objectives)
        if request.warm_start
        else []
    )
    driver = StudyDriver(
        settings,
        EventBus(settings),
        model=request.model,
        dataset_sha256=dataset_sha,
        space=space,
        objectives=request.objectives,
        budget=SearchBudget(
            trials=request.trials,
            wall_time_s=request.wall_time_s,
            parallelism=request.parallelism or max(request.workers, 1),
            trial_timeout_s=request.trial_timeout_s,
        ),
        sampler=request.sampler,
        seed=request.seed,
        warm_start=priors,
        first=champion_params(warehouse, registry, request.model, space)
        if request.warm_start
        else None,
        recorder=WarehouseRecorder(warehouse),
    )
    tracker.params.update(sampler=request.sampler, study=driver.study_name, workers=request.workers)
    with local_workers(settings, request.workers):
        result = driver.run()
    counts = {s: result.count(s) for s in ("completed", "pruned", "failed")}
    counts["warm_started"] = result.warm_started
    if result.best is None:
        raise SearchError(f"study {result.study}: no trial completed ({counts})")
    best = result.best
    bundle = load_bundle(registry.store.get_bytes(best.artifacts["bundle"]))
    artifacts = _store_artifacts(registry.store, bundle, dataset_sha)
    tracker.study = result.study
    tracker.complete(best.metrics, artifacts)
    signature = signature_of(bundle, data, dataset_sha)
    signature["study"] = result.study
    version = _register(
        registry, request, best.run_id, artifacts["bundle"], best.metrics, signature
    )
    return TrainOutcome(
        request.model,
        version.version,
        tracker.run_id,
        result.study,
        dict(best.metrics),
        artifacts,
        tracker.lineage,
        counts,
    )


def prior_trials(
    warehouse: Warehouse,
    model: str,
    space: SearchSpace,
    objectives: Sequence[Objective],
    limit: int = 50,
) -> list[PriorTrial]:
    """Completed trials of earlier studies of ``model``, to warm-start a new one."""
    rows = warehouse.query(
        f"SELECT params, metrics FROM {warehouse.database}.runs FINAL "
        f"WHERE model = {render(model)} AND kind = 'trial' AND status = 'completed' "
        f"ORDER BY event_time_ms DESC LIMIT {int(limit)}"
    ).dicts()
    priors = []
    for row in rows:
        params = _typed_params(row["params"], space)
        values = [row["metrics"].get(o.metric) for o in objectives]
        if params is not None and all(v is not None for v in values):
            priors.append(PriorTrial(params, tuple(float(v) for v in values if v is not None)))
    return priors


def champion_params(
    warehouse: Warehouse, registry: ModelRegistry, model: str, space: SearchSpace
) -> dict[str, ParamValue] | None:
    """The hyperparameters of ``model``'s champion (from its run), or None without one."""
    champion = registry.state.champion(model)
    if champion is None:
        return None
    run_id = registry.state.version(model, champion).run_id
    rows = warehouse.query(
        f"SELECT params FROM {warehouse.database}.runs FINAL "
        f"WHERE run_id = {render(run_id)} LIMIT 1"
    ).dicts()
    return _typed_params(rows[0]["params"], space) if rows else None


def _typed_params(raw: dict[str, str], space: SearchSpace) -> dict[str, ParamValue] | None:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    params: dict[str, ParamValue] = {}
    for name, distribution in space.distributions.items():
        text = raw.get(name)
        if text is None:
            return None
        if isinstance(distribution, IntDistribution):
            params[name] = int(float(text))
        elif isinstance(distribution, CategoricalDistribution):
            match = [c for c in distribution.choices if str(c) == text]
            if not match:
                return None
            choice = match[0]
            params[name] = choice if isinstance(choice, str | int | float | bool) else str(choice)
        else:
            params[name] = float(text)
    return params
