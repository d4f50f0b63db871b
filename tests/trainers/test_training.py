"""The training loop: learning, seeding, parameters, atomic checkpoints, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from headwater.trainers.dataset import TrainingSet
from headwater.trainers.errors import CheckpointError, TrainerError
from headwater.trainers.job import JobResult
from headwater.trainers.model_family import MLPConfig, load_bundle
from headwater.trainers.training import TrainConfig, Trainer


def _data(n: int = 400, seed: int = 0) -> TrainingSet:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 > 0.4).astype(float)
    return TrainingSet.from_arrays(x, y, np.arange(n), ("a", "b", "c"))


CONFIG = TrainConfig(epochs=5, batch_size=32, lr=0.02, network=MLPConfig(width=16, depth=2))


def test_training_learns_and_is_reproducible() -> None:
    first = Trainer(CONFIG, _data()).fit()
    second = Trainer(CONFIG, _data()).fit()
    assert first.metrics["valid_auc"] > 0.85
    assert first.metrics["valid_loss"] < first.history[0]["valid_loss"]
    assert [h["valid_loss"] for h in first.history] == [h["valid_loss"] for h in second.history]


def test_parameters_round_trip() -> None:
    config = TrainConfig.from_params(CONFIG.params())
    assert config == CONFIG
    with pytest.raises(TrainerError, match="unknown training parameter"):
        TrainConfig.from_params({"layers": 3})


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt.pt"

    class StopAfterThree:
        def on_epoch(self, epoch: int, metrics: dict[str, float]) -> bool:
            return epoch < 3

    partial = Trainer(CONFIG, _data(), checkpoint=checkpoint, listener=StopAfterThree()).fit()
    assert partial.stopped_early and len(partial.history) == 3
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 3
    resumed = Trainer(CONFIG, _data(), checkpoint=checkpoint).fit()
    full = Trainer(CONFIG, _data()).fit()
    assert resumed.resumed_from == 3
    np.testing.assert_allclose(
        [h["valid_loss"] for h in resumed.history], [h["valid_loss"] for h in full.history]
    )


def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt.pt"
    Trainer(TrainConfig(epochs=1), _data(), checkpoint=checkpoint).fit()
    with pytest.raises(CheckpointError, match="belongs to another run"):
        Trainer(TrainConfig(epochs=1, seed=9), _data(), checkpoint=checkpoint).fit()


def _epoch_of(checkpoint: Path) -> int:
    if not checkpoint.is_file():
        return 0
    return int(torch.load(checkpoint, weights_only=True)["epoch"])


@pytest.mark.slow
def test_a_killed_run_resumes_losing_at_most_one_epoch(tmp_path: Path) -> None:
    data = _data(800)
    dataset = tmp_path / "data.npz"
    dataset.write_bytes(data.to_bytes())
    config = TrainConfig(epochs=10, batch_size=16, lr=0.01, network=MLPConfig(width=32, depth=2))
    checkpoint, out = tmp_path / "ckpt.pt", tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "headwater.trainers.job",
        "--dataset",
        str(dataset),
        "--config",
        json.dumps(config.params()),
        "--out",
        str(out),
        "--checkpoint",
        str(checkpoint),
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 120
    while _epoch_of(checkpoint) < 3 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    done_before_kill = _epoch_of(checkpoint)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert 3 <= done_before_kill < config.epochs and not (out / "result.json").exists()
    at_kill = _epoch_of(checkpoint)

    subprocess.run(command, env=env, check=True, timeout=300)
    result = JobResult.from_json((out / "result.json").read_text())
    assert result.resumed_from == at_kill >= done_before_kill  # only the running epoch was lost
    assert len(result.history) == config.epochs
    bundle = load_bundle((out / "bundle.pt").read_bytes())
    uninterrupted = Trainer(config, data).fit()
    np.testing.assert_allclose(
        [h["valid_loss"] for h in result.history],
        [h["valid_loss"] for h in uninterrupted.history],
        rtol=1e-4,
    )
    assert bundle.feature_names == ("a", "b", "c")
