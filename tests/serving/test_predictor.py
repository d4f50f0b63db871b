"""The serving predictor: the bundle's own outputs, one intra-op thread in every scoring thread."""

from __future__ import annotations

import threading

import numpy as np
import torch
from torch import nn

from headwater.serving.predictor import ServingPredictor
from headwater.trainers.model_family import MLPConfig, ModelBundle
from tests.serving.modelkit import train_bundle


def agrees(served: ServingPredictor, bundle: ModelBundle, rows: np.ndarray) -> bool:
    """Equal to float32 rounding: only the BLAS's order of summation may differ."""
    return bool(np.allclose(served.predict(rows), bundle.predict(rows), rtol=1e-5, atol=1e-6))


def test_a_trained_mlp_runs_in_numpy_with_the_bundles_outputs() -> None:
    bundle = train_bundle(3, "predictor")
    served = ServingPredictor(bundle)
    assert (served.engine, served.cannot_block) == ("numpy", True)
    rows = np.random.default_rng(0).normal(scale=3.0, size=(500, 3))
    rows[2, 1] = np.nan  # the normalizer's NaN handling is the bundle's own
    rows[3], rows[4] = 1e4, -1e4  # saturated: exp overflows on one side, to exactly 0 or 1
    assert agrees(served, bundle, rows)
    assert served.predict(rows[:1]).shape == (1,)
    assert served.predict(rows).dtype == np.float64


def test_a_regression_mlp_has_no_sigmoid() -> None:
    trained = train_bundle(3, "regression-predictor")
    config = MLPConfig(width=8, depth=3, task="regression")
    network = type(trained.network)(3, config)
    x = np.random.default_rng(1).normal(size=(64, 3))
    bundle = ModelBundle.create(network, config, ("a", "b", "c"), x)
    served = ServingPredictor(bundle)
    assert served.engine == "numpy"
    assert agrees(served, bundle, x)
    assert (served.predict(x) < 0).any()  # raw outputs, not probabilities


def test_another_network_runs_through_torch_with_one_thread_in_every_thread() -> None:
    trained = train_bundle(3, "torch-predictor")
    network = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1), nn.Flatten(0))
    bundle = ModelBundle(
        network, trained.config, trained.feature_names, trained.normalizer, trained.reference
    )
    served = ServingPredictor(bundle)
    assert (served.engine, served.cannot_block) == ("torch", False)
    rows = np.random.default_rng(0).normal(size=(17, 3))
    assert np.array_equal(served.predict(rows), bundle.predict(rows))

    seen: list[tuple[int, bool]] = []

    def in_a_thread() -> None:
        same = bool(np.array_equal(served.predict(rows), bundle.predict(rows)))
        seen.append((torch.get_num_threads(), same))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert seen == [(1, True)]
