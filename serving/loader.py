"""Loading model versions for serving: artifact → sha256 check → safe torch load → warm-up.

:class:`ArtifactIndex` is the fold of ``model-versions`` that serving needs: which artifact
(sha256) each registered version has, and where its registration lives in the log.
:class:`ModelLoader` turns a version into a warm predictor: it reads the artifact from the
:class:`~headwater.trainers.artifacts.ArtifactStore` (which verifies the sha256), loads the bundle
with
``torch.load(weights_only=True)`` (no arbitrary pickle), runs a warm-up prediction, and keeps
the result in a bounded LRU cache.

A missing, tampered or unloadable artifact is refused with :class:`ArtifactRefused`, never
served, and reported once per process as a ``deadletter`` event whose source is the version's
registration record in ``model-versions`` (``reason_code`` ``artifact_missing``,
``artifact_tampered`` or ``artifact_unloadable``): the registration is the record serving could
not honour. The registry's lifecycle is left to its owners (a refused version is not rolled
back by serving); a refusal is retried after ``retry_s``, so a repaired store heals.

>>> from headwater.schemas.models import ModelVersion
>>> index = ArtifactIndex()
>>> index.apply(ModelVersion(model="m", version=1, action="registered",
...     artifact_sha256="a" * 64, event_time_ms=1))
>>> index.artifact("m", 1).sha256[:4], index.versions("m")
('aaaa', [1])
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from headwater.core.errors import HeadwaterError
from headwater.core.settings import HeadwaterSettings
from headwater.infra.event_bus import EventBus
from headwater.schemas.dead_letters import dead_letter
from headwater.schemas.models import ModelVersion
from headwater.serving.errors import ArtifactRefused, ModelUnavailable
from headwater.serving.fallback import Predictor
from headwater.serving.follower import TopicFollower
from headwater.serving.predictor import ServingPredictor
from headwater.serving.router import WeightedRouter
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.errors import ArtifactMissing, ArtifactTampered
from headwater.trainers.model_family import load_bundle


@dataclass(frozen=True)
class ArtifactRef:
    """A registered version's artifact and the position of its registration in the log."""

    sha256: str
    partition: int = -1
    offset: int = -1


class ArtifactIndex:
    """Registered versions and their artifacts, folded from ``model-versions`` events."""

    def __init__(self) -> None:
        self._refs: dict[tuple[str, int], ArtifactRef] = {}
        self._archived: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def apply(self, event: ModelVersion, partition: int = -1, offset: int = -1) -> None:
        key = (event.model, event.version)
        with self._lock:
            if event.action == "registered" and event.artifact_sha256:
                self._refs[key] = ArtifactRef(event.artifact_sha256, partition, offset)
            elif event.action == "archived":
                self._archived.add(key)

    def artifact(self, model: str, version: int) -> ArtifactRef:
        with self._lock:
            ref = self._refs.get((model, version))
            archived = (model, version) in self._archived
        if ref is None:
            raise ModelUnavailable(
                f"{model}@{version} is not registered in model-versions; register it first "
                f"(registered: {self.versions(model)})"
            )
        if archived:
            raise ModelUnavailable(f"{model}@{version} is archived; it is not served any more")
        return ref

    def versions(self, model: str) -> list[int]:
        with self._lock:
            return sorted(v for m, v in self._refs if m == model)


@dataclass(frozen=True)
class LoadedModel:
    """A warm predictor and where it came from."""

    model: str
    version: int
    sha256: str
    predictor: Predictor
    loaded_at_ms: int


class ModelLoader:
    """Warm predictors of registered versions, at most ``capacity`` kept (least recently used
    go first). ``deadletters`` receives the refusal events (none are sent without one)."""

    def __init__(
        self,
        store: ArtifactStore,
        index: ArtifactIndex,
        *,
        capacity: int = 4,
        deadletters: EventBus | None = None,
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.index = index
        self.capacity = capacity
        self.deadletters = deadletters
        self.retry_s = retry_s
        self.clock = clock
        self._cache: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._refused: dict[tuple[str, int], tuple[float, ArtifactRefused]] = {}
        self._reported: set[tuple[str, int, str]] = set()
        self._lock = threading.Lock()
        self._loading = threading.Lock()  # one load at a time: loads are rare and heavy

    def get(self, model: str, version: int) -> LoadedModel:
        """The warm version, loading it on a miss; raises why it cannot be served."""
        key = (model, version)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            refused = self._refused.get(key)
        if refused is not None and self.clock() - refused[0] < self.retry_s:
            raise refused[1]
        with self._loading:
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            loaded = self._load(model, version)
            self._remember(key, loaded)
            return loaded

    def predictor(self, model: str, version: int) -> Predictor:
        return self.get(model, version).predictor

    def cached(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._cache.values())

    def prepare(self, model: str, router: WeightedRouter) -> None:
        """Load and warm every version a new routing names, before it takes traffic. A version
        that cannot be loaded is reported and left to the fallback chain."""
        for version in (*router.weights, *router.shadows):
            try:
                self.get(model, version)
            except HeadwaterError:
                continue  # already reported; requests routed there fall back, flagged

    def _load(self, model: str, version: int) -> LoadedModel:
        ref = self.index.artifact(model, version)
        name = f"{model}@{version}"
        try:
            data = self.store.get_bytes(ref.sha256)
            served = ServingPredictor(load_bundle(data))
            _warm_up(served)
        except ArtifactMissing as error:
            raise self._refuse(model, version, ref, "artifact_missing", str(error)) from None
        except ArtifactTampered as error:
            raise self._refuse(model, version, ref, "artifact_tampered", str(error)) from None
        except (HeadwaterError, RuntimeError, ValueError) as error:
            reason = f"artifact {ref.sha256} of {name} does not load as a model: {error}"
            raise self._refuse(model, version, ref, "artifact_unloadable", reason) from None
        return LoadedModel(model, version, ref.sha256, served, int(time.time() * 1000))

    def _remember(self, key: tuple[str, int], loaded: LoadedModel) -> None:
        with self._lock:
            self._refused.pop(key, None)
            self._cache[key] = loaded
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)  # least recently used; reloaded when asked

    def _refuse(
        self, model: str, version: int, ref: ArtifactRef, code: str, reason: str
    ) -> ArtifactRefused:
        error = ArtifactRefused(f"refusing to serve {model}@{version}: {reason}")
        with self._lock:
            self._refused[(model, version)] = (self.clock(), error)
            first = (model, version, code) not in self._reported
            self._reported.add((model, version, code))
        if first and self.deadletters is not None:
            self.deadletters.send(
                "deadletter",
                dead_letter(
                    "model-versions",
                    ref.partition,
                    ref.offset,
                    code,
                    str(error),
                    f"{model}@{version}".encode(),
                    None,
                ),
            )
            self.deadletters.flush()
        return error


def _warm_up(predictor: Predictor) -> None:
    """One prediction on a zero row, so the first real request pays no lazy initialisation."""
    rows = np.zeros((1, len(predictor.feature_names)), dtype=np.float64)
    outputs = np.asarray(predictor.predict(rows))
    if outputs.shape[0] != 1 or not np.all(np.isfinite(outputs)):
        raise ValueError(f"warm-up gave {outputs!r}; expected one finite output per row")


def follow_model_versions(
    settings: HeadwaterSettings,
    index: ArtifactIndex,
    *,
    deadletters: EventBus | None = None,
    wait_s: float | None = None,
) -> TopicFollower[ModelVersion]:
    """Keep ``index`` current from the ``model-versions`` topic on a background thread."""
    follower = TopicFollower(
        settings, "model-versions", ModelVersion, index.apply, deadletters=deadletters
    )
    return follower.start(wait_s)
