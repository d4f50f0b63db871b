"""Training benchmarks: the trainer against a bare torch loop, and TPE against random search.

``python -m bench.bench_training [--device cpu|cuda|auto] [--large-samples N] [--json]``

* **Trainer overhead**: samples per second of a whole :meth:`Trainer.fit
  <headwater.trainers.training.Trainer.fit>` (standardising, validation, atomic checkpoints,
  progress, seeding, the bundle) against the plainest torch loop over the same tensors, model
  shape, batch size and epochs, timed in the same run (process CPU time on the CPU, wall time
  on CUDA), alternating, best of ``repeats``; ``trainer_to_bare_ratio`` near 1 means the
  trainer costs nothing extra. Measured on a small set, and at ``large_samples`` rows × 32
  features (2 epochs, batch 256 and 4096) on the CPU and, when torch sees one, on CUDA:
  ``cpu_trainer_vs_bare_b256_ratio`` … (target: at least 0.8).
* **Search quality**: the best validation loss after ``trials`` trials of Optuna's TPE against
  random search with the same budget and search space, averaged over ``seeds`` studies
  (ask-and-tell in-process: this compares samplers, not the Kafka fan-out).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from headwater.trainers.dataset import TrainingSet
from headwater.trainers.model_family import MLPConfig, Normalizer, build_network, loss_for
from headwater.trainers.search import SamplerName, make_sampler
from headwater.trainers.search_space import default_space
from headwater.trainers.training import DeviceChoice, TrainConfig, Trainer, pick_device


def _task(samples: int, seed: int = 0, features: int = 8) -> TrainingSet:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, max(features, 5)))
    logits = x[:, 0] * x[:, 1] + np.sin(2 * x[:, 2]) - 0.5 * x[:, 3] ** 2 + 0.3 * x[:, 4]
    y = (logits + 0.3 * rng.normal(size=samples) > 0).astype(float)
    names = [f"f{i}" for i in range(x.shape[1])]
    return TrainingSet.from_arrays(x, y, np.arange(samples), names)


Clock = Callable[[], float]


def clock_for(device: torch.device) -> Clock:
    """Process CPU time on the CPU (the work, which neighbours on a shared machine do not
    inflate the way they inflate wall-clock time); wall-clock time on a GPU (whose work the
    process's CPU time does not see)."""
    return time.process_time if device.type == "cpu" else time.perf_counter


def _bare_loop(
    config: TrainConfig, data: TrainingSet, device: torch.device, clock: Clock = time.perf_counter
) -> float:
    """The reference: tensors on the device, shuffled index batches, forward, backward, step."""
    torch.manual_seed(config.seed)
    x = torch.from_numpy(Normalizer.fit(data.train_x).apply(data.train_x)).to(device)
    y = torch.from_numpy(data.train_y.astype(np.float32)).to(device)
    network = build_network(config.network, x.shape[1]).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr)
    loss_fn = loss_for(config.network.task)
    began = clock()
    for _ in range(config.epochs):
        network.train()
        order = torch.randperm(len(y)).to(device)
        for start in range(0, len(y), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(network(x[batch]), y[batch]).backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return clock() - began


def _trainer(
    config: TrainConfig, data: TrainingSet, folder: Path, clock: Clock = time.perf_counter
) -> float:
    checkpoint = folder / f"bench-{time.monotonic_ns()}.pt"
    began = clock()
    Trainer(config, data, checkpoint=checkpoint, progress=False).fit()
    elapsed = clock() - began
    checkpoint.unlink(missing_ok=True)
    return elapsed


def _once_per_dataset(data: TrainingSet) -> float:
    """Seconds of the work a training set does once for all its fits (its hash, its reference
    distributions): a trial worker pays it on its first trial of a dataset only."""
    began = time.perf_counter()
    _ = data.content_sha256, data.reference
    return time.perf_counter() - began


def trainer_overhead(
    samples: int,
    epochs: int,
    batch_size: int,
    device: DeviceChoice,
    repeats: int,
    features: int = 8,
) -> dict[str, Any]:
    """The trainer's samples/s against the bare loop's, best of ``repeats`` each, alternating.
    The trainer's time is a whole fit (standardising, validation, checkpoints, the bundle);
    the dataset's once-only work is timed apart (``dataset_once_s``)."""
    data = _task(samples, features=features)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=0.005,
        device=device,
        network=MLPConfig(width=128, depth=3),
    )
    chosen = pick_device(device)
    clock = clock_for(chosen)
    bare, ours = float("inf"), float("inf")
    once = _once_per_dataset(data)
    with tempfile.TemporaryDirectory(prefix="hw-bench-") as scratch:
        _bare_loop(config, data, chosen)  # warm-up: allocator, kernels, thread pools
        for _ in range(repeats):
            bare = min(bare, _bare_loop(config, data, chosen, clock))
            ours = min(ours, _trainer(config, data, Path(scratch), clock))
    trained = len(data.train_y) * epochs
    return {
        "device": str(chosen),
        "clock": "cpu" if clock is time.process_time else "wall",
        "train_rows": len(data.train_y),
        "features": features,
        "epochs": epochs,
        "batch_size": batch_size,
        "bare_samples_per_s": trained / bare,
        "trainer_samples_per_s": trained / ours,
        "trainer_to_bare_ratio": bare / ours,
        "trainer_overhead": ours / bare - 1.0,
        "dataset_once_s": once,
        "first_fit_to_bare": bare / (ours + once),
    }


def devices_of(choice: DeviceChoice) -> list[DeviceChoice]:
    """The devices a run measures: the CPU, and CUDA as well when present (``auto``).

    >>> devices_of("cpu")
    ['cpu']
    """
    if choice == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return [choice]


def fits_at_scale(
    samples: int, epochs: int, batches: tuple[int, ...], device: DeviceChoice, repeats: int
) -> dict[str, dict[str, Any]]:
    """Trainer against bare loop at ``samples`` rows × 32 features for every batch size on
    every device, keyed ``cpu_b256`` …"""
    return {
        f"{chosen}_b{batch}": trainer_overhead(samples, epochs, batch, chosen, repeats, 32)
        for chosen in devices_of(device)
        for batch in batches
    }


def _best_loss(
    sampler: SamplerName, seed: int, trials: int, data: TrainingSet, epochs: int
) -> float:
    space = default_space(epochs=epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(sampler=make_sampler(sampler, seed))
        for _ in range(trials):
            trial = study.ask(space.distributions)
            config = TrainConfig.from_params(space.params_of(trial.params), device="cpu")
            loss = Trainer(config, data, progress=False).fit().metrics["valid_loss"]
            study.tell(trial, loss if np.isfinite(loss) else 10.0)
    return float(study.best_value)


def search_quality(trials: int, seeds: int, samples: int, epochs: int) -> dict[str, Any]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = _task(samples, seed=7)
    tpe = [_best_loss("tpe", s, trials, data, epochs) for s in range(seeds)]
    rnd = [_best_loss("random", s, trials, data, epochs) for s in range(seeds)]
    return {
        "trials": trials,
        "seeds": seeds,
        "tpe_best_valid_loss": float(np.mean(tpe)),
        "random_best_valid_loss": float(np.mean(rnd)),
        "tpe_wins": sum(t < r for t, r in zip(tpe, rnd, strict=True)),
        "tpe_to_random_loss_ratio": float(np.mean(tpe) / np.mean(rnd)),
    }


def run(
    samples: int = 20_000,
    epochs: int = 4,
    batch_size: int = 256,
    trials: int = 12,
    seeds: int = 3,
    search_samples: int = 1_500,
    device: DeviceChoice = "auto",
    repeats: int = 3,
    threads: int = 1,
    large_samples: int = 1_000_000,
    large_epochs: int = 2,
    large_batches: tuple[int, ...] = (256, 4096),
    large_repeats: int = 2,
) -> dict[str, Any]:
    """Both benchmarks; ratios under ``ratios``: the small fit (``trainer_to_bare_ratio``), and
    at ``large_samples`` rows per device and batch size (``cpu_trainer_vs_bare_b256_ratio``…;
    ``large_samples=0`` skips them). One intra-op thread by default: on a shared machine more
    threads mostly measure the neighbours."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        overhead = trainer_overhead(samples, epochs, batch_size, device, repeats)
        large = (
            fits_at_scale(large_samples, large_epochs, large_batches, device, large_repeats)
            if large_samples
            else {}
        )
        search = search_quality(trials, seeds, search_samples, max(2, epochs))
    finally:
        torch.set_num_threads(before)
    ratios = {"trainer_to_bare_ratio": overhead["trainer_to_bare_ratio"]}
    for key, fit in large.items():
        chosen, batch = key.split("_")
        ratios[f"{chosen}_trainer_vs_bare_{batch}_ratio"] = fit["trainer_to_bare_ratio"]
    ratios["tpe_to_random_loss_ratio"] = search["tpe_to_random_loss_ratio"]
    return {
        "threads": threads,
        "trainer": overhead,
        "large": large,
        "search": search,
        "ratios": ratios,
        "target_trainer_to_bare": 0.8,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_training")
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--large-samples", type=int, default=1_000_000, help="0: skip")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(
        samples=args.samples,
        epochs=args.epochs,
        trials=args.trials,
        seeds=args.seeds,
        device=args.device,
        threads=args.threads,
        large_samples=args.large_samples,
    )
    if args.json:
        print(json.dumps(result))
        return
    t, s = result["trainer"], result["search"]
    print(
        f"trainer on {t['device']}: {t['trainer_samples_per_s']:,.0f} samples/s vs bare loop "
        f"{t['bare_samples_per_s']:,.0f} (ratio {t['trainer_to_bare_ratio']:.3f})"
    )
    for key, fit in result["large"].items():
        print(
            f"{key} at {fit['train_rows']:,} rows: trainer {fit['trainer_samples_per_s']:,.0f} "
            f"samples/s vs bare {fit['bare_samples_per_s']:,.0f} "
            f"(ratio {fit['trainer_to_bare_ratio']:.3f}; once per dataset "
            f"{fit['dataset_once_s']:.2f} s)"
        )
    print(
        f"search, best valid loss after {s['trials']} trials (mean of {s['seeds']}): TPE "
        f"{s['tpe_best_valid_loss']:.4f} vs random {s['random_best_valid_loss']:.4f} "
        f"(TPE better in {s['tpe_wins']}/{s['seeds']})"
    )


if __name__ == "__main__":
    main()
