"""The serving predictor: the bundle's own outputs, one intra-op thread in every scoring thread."""

from __future__ import annotations

import threading

import numpy as np
import torch

from headwater.serving.predictor import ServingPredictor
from tests.serving.modelkit import train_bundle


def test_outputs_equal_the_bundles_in_every_thread() -> None:
    bundle = train_bundle(3, "predictor")
    served = ServingPredictor(bundle)
    rows = np.random.default_rng(0).normal(size=(17, 3))
    rows[2, 1] = np.nan  # the normalizer's NaN handling is the bundle's own
    assert np.array_equal(served.predict(rows), bundle.predict(rows))
    assert served.predict(rows[:1]).shape == (1,)

    seen: list[tuple[int, bool]] = []

    def in_a_thread() -> None:
        same = bool(np.array_equal(served.predict(rows), bundle.predict(rows)))
        seen.append((torch.get_num_threads(), same))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert seen == [(1, True)]
