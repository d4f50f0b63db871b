"""The torch training loop: device choice, seeding, batches, progress, checkpoints, resume, DDP.

Every epoch ends with an atomic checkpoint (model, optimizer, history), so a killed run
resumes where its last epoch ended. Batches and dropout are drawn from generators seeded by
``(seed, epoch)``, which makes a resumed run identical to one that was never interrupted.

A fit pays only for training: rows are standardised in float32 on the training device, the
rows' hash (for the checkpoint's fingerprint) and their reference distributions are the
training set's, computed once however many fits use it, and intermediate epochs validate on a
bounded, evenly spaced share of the validation rows (the last epoch on all of them).

Under torchrun (``WORLD_SIZE`` > 1) the network is wrapped in DistributedDataParallel and each
rank takes its share of every *global* batch, so the averaged gradient — and the quality —
equals single-process training with the same batch size.

>>> import numpy as np
>>> from headwater.trainers.dataset import TrainingSet
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(200, 2)); y = (x[:, 0] > 0).astype(float)
>>> data = TrainingSet.from_arrays(x, y, np.arange(200), ("a", "b"))
>>> result = Trainer(TrainConfig(epochs=5, batch_size=32, lr=0.05), data).fit()
>>> result.metrics["valid_auc"] > 0.9, len(result.history)
(True, 5)
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from headwater.schemas.models import ParamValue
from headwater.trainers.checkpoints import load_checkpoint, save_checkpoint
from headwater.trainers.dataset import TrainingSet
from headwater.trainers.errors import TrainerError
from headwater.trainers.evaluation import validation_metrics
from headwater.trainers.model_family import (
    MLPConfig,
    ModelBundle,
    Normalizer,
    build_network,
    loss_for,
)

DeviceChoice = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run."""

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: DeviceChoice = "auto"
    network: MLPConfig = field(default_factory=MLPConfig)

    def params(self) -> dict[str, ParamValue]:
        """Flat parameters, as recorded on ``runs`` and sent in ``trials``."""
        flat: dict[str, ParamValue] = {
            k: v for k, v in asdict(self).items() if k not in ("network", "device")
        }
        flat.update({k: v for k, v in asdict(self.network).items()})
        return flat

    @classmethod
    def from_params(cls, params: Mapping[str, ParamValue], **fixed: Any) -> TrainConfig:
        """A config from flat parameters (unknown names are refused)."""
        net_names = set(MLPConfig.__dataclass_fields__)
        own = set(cls.__dataclass_fields__) - {"network"}
        unknown = set(params) - net_names - own
        if unknown:
            raise TrainerError(f"unknown training parameter(s) {sorted(unknown)}")
        network = MLPConfig.from_mapping({k: v for k, v in params.items() if k in net_names})
        values: dict[str, Any] = {k: v for k, v in params.items() if k in own}
        values.update(fixed)
        for name in ("epochs", "batch_size", "seed"):
            if name in values:
                values[name] = int(values[name])
        for name in ("lr", "weight_decay"):
            if name in values:
                values[name] = float(values[name])
        return cls(network=network, **values)


class EpochListener(Protocol):
    """Told each finished epoch's metrics; returning False stops the run (pruned)."""

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> bool: ...


@dataclass(frozen=True)
class DistContext:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


@dataclass(frozen=True)
class TrainResult:
    bundle: ModelBundle
    history: list[dict[str, float]]
    resumed_from: int
    stopped_early: bool

    @property
    def metrics(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def pick_device(choice: DeviceChoice, local_rank: int = 0) -> torch.device:
    """``cuda`` when asked for or when present under ``auto``; otherwise the CPU."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise TrainerError("device 'cuda' was asked for but torch sees no CUDA device")
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def fingerprint_of(config: TrainConfig, data: TrainingSet) -> str:
    """Identifies a run: its configuration (without the device) and its exact rows (the rows'
    hash is the training set's, computed once however many fits use it)."""
    digest = hashlib.sha256(json.dumps(config.params(), sort_keys=True).encode())
    digest.update(data.content_sha256.encode())
    return digest.hexdigest()[:32]


# Intermediate epochs validate on evenly spaced rows of the validation set, at most this share of
# the training rows (and at least MIN_CHECK_ROWS): with a large validation set a full pass after
# every epoch would cost a noticeable share of the epoch. The last epoch validates on every row.
CHECK_SHARE = 0.05
MIN_CHECK_ROWS = 10_000
VALIDATION_SLICE = 32_768


def check_rows(train_rows: int, valid_rows: int) -> int:
    """How many validation rows an intermediate epoch's check uses.

    >>> check_rows(800_000, 200_000), check_rows(400, 100)
    (40000, 100)
    """
    return min(valid_rows, max(MIN_CHECK_ROWS, int(train_rows * CHECK_SHARE)))


class Trainer:
    """Trains one network of the family on a :class:`TrainingSet`."""

    def __init__(
        self,
        config: TrainConfig,
        data: TrainingSet,
        *,
        checkpoint: Path | None = None,
        listener: EpochListener | None = None,
        progress: bool | None = None,
        dist: DistContext | None = None,
    ) -> None:
        self.config = config
        self.data = data
        self.checkpoint = checkpoint
        self.listener = listener
        self.dist = dist or DistContext()
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.device = pick_device(config.device, self.dist.local_rank)

    def fit(self) -> TrainResult:
        config, data = self.config, self.data
        seed_everything(config.seed)
        normalizer, x = Normalizer.fit_on(data.train_x, self.device)
        y = torch.from_numpy(data.train_y).to(self.device, torch.float32)
        valid_x = normalizer.apply_on(data.valid_x, self.device)
        network = build_network(config.network, len(data.feature_names)).to(self.device)
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        fingerprint = fingerprint_of(config, data)
        history, start = self._resume(network, optimizer, fingerprint)
        model = self._parallel(network)
        loss_fn = loss_for(config.network.task)
        check = _spaced(check_rows(len(data.train_y), len(data.valid_y)), len(data.valid_y))
        stopped = False
        bar = tqdm(
            total=config.epochs,
            initial=start,
            desc="train",
            unit="epoch",
            disable=not (self.progress and self.dist.rank == 0),
        )
        try:
            for epoch in range(start, config.epochs):
                began = time.perf_counter()
                train_loss = self._train_epoch(model, optimizer, loss_fn, x, y, epoch)
                rows = None if epoch + 1 == config.epochs else check
                metrics = self._validate(network, valid_x, rows)
                metrics["train_loss"] = train_loss
                metrics["samples_per_s"] = len(y) / max(time.perf_counter() - began, 1e-9)
                history.append(metrics)
                self._save(network, optimizer, fingerprint, epoch + 1, history)
                bar.update(1)
                bar.set_postfix(valid_loss=f"{metrics['valid_loss']:.4f}")
                if self.listener is not None and not self.listener.on_epoch(epoch + 1, metrics):
                    stopped = True
                    break
        finally:
            bar.close()
        bundle = ModelBundle.create(
            network.cpu(),
            config.network,
            data.feature_names,
            data.train_x,
            normalizer,
            reference=data.reference,
        )
        return TrainResult(bundle, history, start, stopped)

    def _parallel(self, network: nn.Module) -> nn.Module:
        if self.dist.world_size == 1:
            return network
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(network, device_ids=ids)

    def _train_epoch(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        epoch: int,
    ) -> float:
        model.train()
        rank, world = self.dist.rank, self.dist.world_size
        seed = self.config.seed * 100_003 + epoch
        torch.manual_seed(seed)  # dropout masks: the same stream after a resume
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        order = order.to(self.device)
        total = torch.zeros((), device=self.device)
        seen = 0
        size = self.config.batch_size
        for start in range(0, len(y), size):
            batch = order[start : start + size]
            if world > 1:
                if len(batch) < world:
                    break  # every rank must take the same number of steps
                batch = batch[rank::world]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total.add_(loss.detach(), alpha=len(batch))
            seen += len(batch)
        return float(total.item()) / max(seen, 1)

    def _validate(
        self, network: nn.Module, valid_x: torch.Tensor, rows: np.ndarray | None
    ) -> dict[str, float]:
        """Metrics on the validation rows (on ``rows`` of them when given)."""
        network.eval()
        inputs = valid_x if rows is None else valid_x[torch.from_numpy(rows).to(self.device)]
        with torch.no_grad():
            # In slices: one pass over a large validation set allocates activations that do
            # not stay in cache (slower on the CPU, a memory peak on a GPU).
            parts = torch.split(inputs, VALIDATION_SLICE)
            raw = torch.cat([network(part) for part in parts])
            out = torch.sigmoid(raw) if self.config.network.task == "binary" else raw
        prediction = out.detach().cpu().numpy().astype(np.float64)
        labels = self.data.valid_y if rows is None else self.data.valid_y[rows]
        return validation_metrics(self.config.network.task, labels, prediction)

    def _resume(
        self, network: nn.Module, optimizer: torch.optim.Optimizer, fingerprint: str
    ) -> tuple[list[dict[str, float]], int]:
        if self.checkpoint is None:
            return [], 0
        state = load_checkpoint(self.checkpoint, fingerprint)
        if state is None:
            return [], 0
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = [{str(k): float(v) for k, v in h.items()} for h in state["history"]]
        return history, int(state["epoch"])

    def _save(
        self,
        network: nn.Module,
        optimizer: torch.optim.Optimizer,
        fingerprint: str,
        epochs_done: int,
        history: list[dict[str, float]],
    ) -> None:
        if self.checkpoint is None or self.dist.rank != 0:
            return
        state = {
            "fingerprint": fingerprint,
            "epoch": epochs_done,
            "model": {k: v.detach().cpu() for k, v in network.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "history": history,
        }
        save_checkpoint(self.checkpoint, state)


def _spaced(count: int, total: int) -> np.ndarray | None:
    """``count`` evenly spaced indexes of ``total`` rows (None: all of them)."""
    if count >= total:
        return None
    return np.linspace(0, total - 1, count).astype(np.int64)
