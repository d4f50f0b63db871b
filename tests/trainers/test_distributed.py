"""Data-parallel training with torchrun: two gloo processes on the CPU, same quality as one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from headwater.trainers.dataset import TrainingSet
from headwater.trainers.distributed import run_distributed
from headwater.trainers.job import JobResult
from headwater.trainers.model_family import MLPConfig, load_bundle
from headwater.trainers.training import TrainConfig, Trainer


@pytest.mark.slow
def test_two_process_ddp_matches_single_process_quality(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(800, 4))
    y = (x[:, 0] - x[:, 2] + 0.3 * rng.normal(size=800) > 0).astype(float)
    data = TrainingSet.from_arrays(x, y, np.arange(800), ("a", "b", "c", "d"))
    (tmp_path / "data.npz").write_bytes(data.to_bytes())
    network = MLPConfig(width=16, depth=2)
    config = TrainConfig(epochs=5, batch_size=64, lr=0.02, device="cpu", network=network)
    args = ["--dataset", str(tmp_path / "data.npz"), "--config", json.dumps(config.params())]
    args += ["--out", str(tmp_path / "out"), "--device", "cpu"]

    run_distributed(2, args, timeout_s=240)

    result = JobResult.from_json((tmp_path / "out" / "result.json").read_text())
    single = Trainer(config, data).fit()
    assert result.world_size == 2 and len(result.history) == 5
    ddp_final, single_final = result.history[-1], single.metrics
    assert abs(ddp_final["valid_auc"] - single_final["valid_auc"]) < 0.01
    assert abs(ddp_final["valid_loss"] - single_final["valid_loss"]) < 0.01
    bundle = load_bundle((tmp_path / "out" / "bundle.pt").read_bytes())
    np.testing.assert_allclose(
        bundle.predict(data.valid_x), single.bundle.predict(data.valid_x), atol=0.02
    )
