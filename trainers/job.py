"""One training job: ``python -m headwater.trainers.job`` — alone, or as every rank of a torchrun
launch.

It reads a training set artifact and a configuration, trains with checkpoints (resuming from
the last one after a kill), and on rank 0 writes the bundle and a JSON result to ``--out``.
With ``--run-id`` it reports the run on ``runs`` (settings from the environment).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist

from headwater.core.errors import HeadwaterError
from headwater.trainers.dataset import TrainingSet
from headwater.trainers.training import (
    DistContext,
    EpochListener,
    TrainConfig,
    Trainer,
    TrainResult,
)


@dataclass(frozen=True)
class JobResult:
    """What rank 0 writes to ``result.json``."""

    history: list[dict[str, float]]
    resumed_from: int
    stopped_early: bool
    world_size: int

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobResult:
        raw = json.loads(text)
        return cls(
            raw["history"],
            int(raw["resumed_from"]),
            bool(raw["stopped_early"]),
            int(raw["world_size"]),
        )


def dist_context() -> DistContext:
    """This process's ranks from torchrun's environment variables."""
    return DistContext(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def run_job(
    config: TrainConfig,
    data: TrainingSet,
    out: Path,
    *,
    checkpoint: Path | None = None,
    listener: EpochListener | None = None,
    progress: bool | None = None,
) -> TrainResult:
    context = dist_context()
    if context.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if config.device != "cpu" and _cuda() else "gloo"
        dist.init_process_group(backend=backend)
    try:
        trainer = Trainer(
            config,
            data,
            checkpoint=checkpoint,
            listener=listener if context.rank == 0 else None,
            progress=progress,
            dist=context,
        )
        result = trainer.fit()
        if context.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            (out / "bundle.pt").write_bytes(result.bundle.to_bytes())
            summary = JobResult(
                result.history, result.resumed_from, result.stopped_early, context.world_size
            )
            (out / "result.json").write_text(summary.to_json())
        return result
    finally:
        if context.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m headwater.trainers.job")
    parser.add_argument("--dataset", type=Path, required=True, help="a TrainingSet .npz file")
    parser.add_argument("--config", required=True, help="training parameters as a JSON object")
    parser.add_argument("--out", type=Path, required=True, help="where rank 0 writes the result")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args(argv)
    try:
        data = TrainingSet.from_bytes(args.dataset.read_bytes())
        config = TrainConfig.from_params(json.loads(args.config), device=args.device)
        run_job(config, data, args.out, checkpoint=args.checkpoint)
    except HeadwaterError as error:
        print(f"headwater.trainers.job: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
