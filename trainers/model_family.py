"""Tabular models: the network family, its preprocessing, and the bundle that ships them.

A *bundle* is everything serving and drift detection need from a training run, as bytes that
``torch.load(..., weights_only=True)`` reads back — only tensors, strings, numbers, lists and
dicts, never pickled classes: the network's weights and configuration, the feature names in
input order, the normalisation statistics, and the training reference distribution of every
feature (for drift detection).

>>> import numpy as np
>>> x = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 5.0]])
>>> config = MLPConfig(width=4, depth=1)
>>> bundle = ModelBundle.create(build_network(config, 2), config, ("a", "b"), x)
>>> loaded = load_bundle(bundle.to_bytes())
>>> loaded.feature_names, loaded.predict(x).shape
(('a', 'b'), (3,))
>>> bool(np.allclose(loaded.predict(x), bundle.predict(x)))
True
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, cast

import numpy as np
import torch
from torch import nn

from headwater.trainers.errors import BundleError

Task = Literal["binary", "regression"]
BUNDLE_FORMAT = "headwater.bundle/1"
REFERENCE_BINS = 10


class TabularModel(Protocol):
    """What callers use of a trained model: its input order and a batch prediction."""

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class MLPConfig:
    """The multilayer perceptron's shape. ``task='binary'`` outputs a probability."""

    width: int = 64
    depth: int = 2
    dropout: float = 0.0
    task: Task = "binary"

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 0 or not 0.0 <= self.dropout < 1.0:
            raise BundleError(f"invalid MLP shape {self}: width ≥ 1, depth ≥ 0, 0 ≤ dropout < 1")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> MLPConfig:
        task = str(values.get("task", "binary"))
        if task not in ("binary", "regression"):
            raise BundleError(f"unknown task {task!r}; tasks: binary, regression")
        return cls(
            width=int(values.get("width", 64)),
            depth=int(values.get("depth", 2)),
            dropout=float(values.get("dropout", 0.0)),
            task=cast(Task, task),
        )


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units (ReLU, dropout), one output logit per row."""

    def __init__(self, n_features: int, config: MLPConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = n_features
        for _ in range(config.depth):
            layers += [nn.Linear(size, config.width), nn.ReLU(), nn.Dropout(config.dropout)]
            size = config.width
        layers.append(nn.Linear(size, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(x)
        return out.squeeze(-1)


def build_network(config: MLPConfig, n_features: int) -> nn.Module:
    """A fresh network of the family for ``n_features`` inputs."""
    return MLP(n_features, config)


def loss_for(task: Task) -> nn.Module:
    """The training loss of a task, on the network's raw output."""
    return nn.BCEWithLogitsLoss() if task == "binary" else nn.MSELoss()


def output_of(task: Task, raw: torch.Tensor) -> torch.Tensor:
    """The prediction from the network's raw output: a probability for ``binary``."""
    return torch.sigmoid(raw) if task == "binary" else raw


@dataclass(frozen=True)
class Normalizer:
    """Per-feature standardisation learned on the training rows; NaN inputs become the mean."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Normalizer:
        """Mean and standard deviation of the finite values of each column (0 and 1 for a
        column without any)."""
        values = np.asarray(x, dtype=np.float64)
        finite = np.isfinite(values)
        counts = finite.sum(axis=0)
        seen = np.maximum(counts, 1)
        mean = np.where(finite, values, 0.0).sum(axis=0) / seen
        variance = np.where(finite, (values - mean) ** 2, 0.0).sum(axis=0) / seen
        std = np.sqrt(variance)
        return cls(mean, np.where(std > 1e-12, std, 1.0))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Standardised rows in float32; a NaN or an infinity becomes 0 (the mean).

        >>> Normalizer(np.array([1.0]), np.array([2.0])).apply(np.array([[5.0], [np.nan]]))
        array([[2.],
               [0.]], dtype=float32)
        """
        scaled = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        # In place: np.nan_to_num's generality cost 15 us a call, on the scoring path's batches.
        np.copyto(scaled, 0.0, where=~np.isfinite(scaled))
        result: np.ndarray = scaled.astype(np.float32)
        return result

    @classmethod
    def fit_on(cls, x: np.ndarray, device: torch.device) -> tuple[Normalizer, torch.Tensor]:
        """:meth:`fit` and :meth:`apply` together, in float32 on ``device``: training pays
        neither a float64 copy of its rows nor the CPU's speed on a GPU machine. The statistics
        agree with :meth:`fit` to float32 precision; rows with a NaN or an infinity take
        :meth:`fit`'s own.

        >>> x = np.array([[1.0, 5.0], [3.0, np.nan]])
        >>> normalizer, rows = Normalizer.fit_on(x, torch.device("cpu"))
        >>> normalizer.mean.tolist(), normalizer.std.tolist(), rows.tolist()
        ([2.0, 5.0], [1.0, 1.0], [[-1.0, 0.0], [1.0, 0.0]])
        """
        values = _float32_on(x, device)
        mean = values.mean(dim=0)
        # A NaN or an infinity anywhere in a column makes its mean non-finite (and values too
        # large for float32 squares, its variance): those rows take the float64 statistics.
        if bool(torch.isfinite(mean).all()):
            values.sub_(mean)
            # two passes (centred, then squared): exact where var_mean's Welford pass is slow
            std = (values.square().sum(dim=0) / max(len(values), 1)).sqrt_()
            if bool(torch.isfinite(std).all()):
                # float32 rounding leaves a constant column a tiny spread instead of 0: a
                # spread below float32's resolution at the column's magnitude counts as none.
                flat = (std <= 1e-12) | (std <= 1e-6 * mean.abs())
                std = torch.where(flat, torch.ones_like(std), std)
                normalizer = cls(mean.double().cpu().numpy(), std.double().cpu().numpy())
                return normalizer, values.div_(std)
        normalizer = cls.fit(x)
        return normalizer, normalizer.apply_on(x, device)

    def apply_on(self, x: np.ndarray, device: torch.device) -> torch.Tensor:
        """:meth:`apply` in float32 on ``device``."""
        mean = torch.from_numpy(self.mean).to(device=device, dtype=torch.float32)
        std = torch.from_numpy(self.std).to(device=device, dtype=torch.float32)
        values = _float32_on(x, device).sub_(mean).div_(std)
        return values.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)


def _float32_on(x: np.ndarray, device: torch.device) -> torch.Tensor:
    # A copy always: the caller's rows are standardised in place.
    return torch.from_numpy(np.asarray(x)).to(device=device, dtype=torch.float32, copy=True)


@dataclass(frozen=True)
class FeatureReference:
    """A feature's training distribution: quantile bin edges and the share of rows per bin."""

    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    mean: float
    std: float
    count: int

    @classmethod
    def of(cls, values: np.ndarray, bins: int = REFERENCE_BINS) -> FeatureReference:
        # One sort serves both the quantiles and the counts (numpy.histogram would sort again).
        finite = np.sort(values[np.isfinite(values)])
        if finite.size == 0:
            return cls((), (), 0.0, 0.0, 0)
        edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)))
        if edges.size < 2:
            edges = np.array([edges[0], edges[0]])
        # numpy.histogram's bins: [e_k, e_k+1), the last one closed.
        below = np.concatenate(
            (
                np.searchsorted(finite, edges[:-1], side="left"),
                np.searchsorted(finite, edges[-1:], side="right"),
            )
        )
        counts = np.diff(below)
        return cls(
            tuple(float(e) for e in edges),
            tuple(float(c) / finite.size for c in counts),
            float(finite.mean()),
            float(finite.std()),
            int(finite.size),
        )


def reference_distributions(
    x: np.ndarray, feature_names: Sequence[str]
) -> dict[str, FeatureReference]:
    """The reference distribution of every feature column of the training rows."""
    return {name: FeatureReference.of(x[:, i]) for i, name in enumerate(feature_names)}


@dataclass
class ModelBundle:
    """A trained network with what it needs to be served and monitored."""

    network: nn.Module
    config: MLPConfig
    feature_names: tuple[str, ...]
    normalizer: Normalizer
    reference: dict[str, FeatureReference]
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        network: nn.Module,
        config: MLPConfig,
        feature_names: Sequence[str],
        train_x: np.ndarray,
        normalizer: Normalizer | None = None,
        metadata: Mapping[str, str] | None = None,
        reference: Mapping[str, FeatureReference] | None = None,
    ) -> ModelBundle:
        """A bundle whose statistics and reference distributions come from ``train_x``
        (``reference``, when given, is those distributions computed already)."""
        return cls(
            network,
            config,
            tuple(feature_names),
            normalizer or Normalizer.fit(train_x),
            dict(reference or reference_distributions(train_x, feature_names)),
            dict(metadata or {}),
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs for rows of raw feature values in :attr:`feature_names` order."""
        rows = np.asarray(x, dtype=np.float64).reshape(-1, len(self.feature_names))
        inputs = torch.from_numpy(self.normalizer.apply(rows))
        parameter = next(self.network.parameters(), None)
        if parameter is not None:
            inputs = inputs.to(parameter.device)
        self.network.eval()
        with torch.no_grad():
            out = output_of(self.config.task, self.network(inputs))
        result: np.ndarray = out.detach().cpu().numpy().astype(np.float64)
        return result

    def to_bytes(self) -> bytes:
        """The bundle as bytes that ``torch.load(weights_only=True)`` reads."""
        state = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}
        payload = {
            "format": BUNDLE_FORMAT,
            "family": "mlp",
            "config": asdict(self.config),
            "feature_names": list(self.feature_names),
            "normalizer": {
                "mean": torch.from_numpy(self.normalizer.mean.copy()),
                "std": torch.from_numpy(self.normalizer.std.copy()),
            },
            "reference": {
                name: {
                    "edges": list(ref.edges),
                    "proportions": list(ref.proportions),
                    "mean": ref.mean,
                    "std": ref.std,
                    "count": ref.count,
                }
                for name, ref in self.reference.items()
            },
            "state_dict": state,
            "metadata": dict(self.metadata),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        return buffer.getvalue()


def _reference_from(raw: Mapping[str, Any]) -> FeatureReference:
    return FeatureReference(
        tuple(float(e) for e in raw["edges"]),
        tuple(float(p) for p in raw["proportions"]),
        float(raw["mean"]),
        float(raw["std"]),
        int(raw["count"]),
    )


def load_bundle(data: bytes) -> ModelBundle:
    """A bundle from :meth:`ModelBundle.to_bytes`, loaded without unpickling any class."""
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as error:
        raise BundleError(f"not a model bundle ({len(data)} bytes): {error}") from None
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise BundleError(f"unknown bundle format {found!r}; expected {BUNDLE_FORMAT!r}")
    try:
        config = MLPConfig.from_mapping(payload["config"])
        names = tuple(str(n) for n in payload["feature_names"])
        network = build_network(config, len(names))
        network.load_state_dict(payload["state_dict"])
        normalizer = Normalizer(
            payload["normalizer"]["mean"].numpy(), payload["normalizer"]["std"].numpy()
        )
        reference = {str(k): _reference_from(v) for k, v in payload["reference"].items()}
        metadata = {str(k): str(v) for k, v in payload.get("metadata", {}).items()}
    except (KeyError, TypeError, RuntimeError, AttributeError) as error:
        raise BundleError(f"malformed model bundle: {error}") from None
    network.eval()
    return ModelBundle(network, config, names, normalizer, reference, metadata)
