"""The MLP family and its bundle: weights-only loading, predictions, reference distributions."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from headwater.trainers.errors import BundleError
from headwater.trainers.model_family import (
    FeatureReference,
    MLPConfig,
    ModelBundle,
    Normalizer,
    build_network,
    load_bundle,
)


def _data(n: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.column_stack([rng.normal(10.0, 2.0, n), rng.uniform(0.0, 1.0, n)])


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_a_bundle_round_trips_through_weights_only_loading(task: str) -> None:
    x = _data()
    config = MLPConfig(width=8, depth=3, dropout=0.1, task=task)  # type: ignore[arg-type]
    bundle = ModelBundle.create(build_network(config, 2), config, ["amount", "ratio"], x)
    bundle.metadata["run_id"] = "run-1"
    data = bundle.to_bytes()
    raw = torch.load(io.BytesIO(data), weights_only=True)
    assert raw["feature_names"] == ["amount", "ratio"]
    loaded = load_bundle(data)
    assert loaded.feature_names == ("amount", "ratio")
    assert loaded.config == config
    assert loaded.metadata == {"run_id": "run-1"}
    np.testing.assert_allclose(loaded.predict(x), bundle.predict(x), rtol=1e-6)
    out = loaded.predict(x)
    assert out.shape == (64,)
    if task == "binary":
        assert ((out > 0) & (out < 1)).all()


def test_reference_distributions_describe_the_training_rows() -> None:
    x = _data(1000)
    bundle = ModelBundle.create(build_network(MLPConfig(), 2), MLPConfig(), ["a", "b"], x)
    ref = load_bundle(bundle.to_bytes()).reference["a"]
    assert ref.count == 1000
    assert abs(ref.mean - x[:, 0].mean()) < 1e-9
    assert len(ref.edges) == len(ref.proportions) + 1
    assert abs(sum(ref.proportions) - 1.0) < 1e-9
    assert FeatureReference.of(np.array([np.nan])).count == 0


def test_missing_values_are_imputed_with_the_training_mean() -> None:
    normalizer = Normalizer.fit(np.array([[1.0], [3.0]]))
    assert normalizer.apply(np.array([[np.nan], [2.0]])).tolist() == [[0.0], [0.0]]


def test_foreign_bytes_are_not_a_bundle() -> None:
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(b"garbage")
    buffer = io.BytesIO()
    torch.save({"format": "other/9"}, buffer)
    with pytest.raises(BundleError, match="unknown bundle format"):
        load_bundle(buffer.getvalue())


def test_an_invalid_shape_is_refused() -> None:
    with pytest.raises(BundleError, match="invalid MLP shape"):
        MLPConfig(width=0)


def test_the_float32_normaliser_on_the_device_agrees_with_the_float64_one() -> None:
    rng = np.random.default_rng(5)
    for dirty in (False, True):
        x = rng.normal(1000.0, 3.0, size=(2000, 4))
        x[:, 3] = 7.0  # a constant column: no spread, standardised to 0
        if dirty:
            x[5, 1], x[7, 2], x[9, 0] = np.nan, np.inf, -np.inf
        normalizer, rows = Normalizer.fit_on(x, torch.device("cpu"))
        reference = Normalizer.fit(x)
        np.testing.assert_allclose(normalizer.mean, reference.mean, rtol=1e-6)
        np.testing.assert_allclose(normalizer.std, reference.std, rtol=1e-4)
        np.testing.assert_allclose(rows.numpy(), reference.apply(x), atol=1e-3)
        assert rows.dtype == torch.float32 and bool(torch.isfinite(rows).all())
        again = normalizer.apply_on(x, torch.device("cpu"))
        np.testing.assert_allclose(again.numpy(), rows.numpy(), atol=1e-5)
