"""How many trial processes a machine runs, and what each may take of it.

A small network leaves a GPU mostly idle (its kernels are launch-bound), so several trial
processes share one: eight on one H200 finished 6.3× the trials per minute of one
(FIELD-NOTES.md). Without a GPU the trials compete with the stream for the cores, so they get
by default a share of them, and each a thread count and a nice level. :func:`plan_trials` is
the pure choice; :func:`machine_budget` feeds it this machine's cores and GPUs.

>>> plan_trials(None, cpu_cores=16, gpu_free_mb=(80_000,), per_gpu=0, gpu_mb_per_trial=4096,
...             max_per_gpu=8, cpu_share=0.5, threads=1, nice=10)
TrialBudget(workers=8, threads=1, nice=10, gpus=(0, 0, 0, 0, 0, 0, 0, 0))
>>> plan_trials(None, cpu_cores=2, gpu_free_mb=(), per_gpu=0, gpu_mb_per_trial=4096,
...             max_per_gpu=8, cpu_share=0.5, threads=1, nice=10)
TrialBudget(workers=1, threads=1, nice=10, gpus=())
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from headwater.core.settings import HeadwaterSettings


@dataclass(frozen=True)
class TrialBudget:
    """Trial processes to start here, torch threads and nice level of each, and the GPU of
    each in start order (empty: they train on the CPU)."""

    workers: int
    threads: int
    nice: int
    gpus: tuple[int, ...] = ()


def plan_trials(
    requested: int | None,
    *,
    cpu_cores: int,
    gpu_free_mb: Sequence[int],
    per_gpu: int,
    gpu_mb_per_trial: int,
    max_per_gpu: int,
    cpu_share: float,
    threads: int,
    nice: int,
) -> TrialBudget:
    """The trial processes for a machine with ``cpu_cores`` cores and GPUs with
    ``gpu_free_mb`` free memory each: ``requested`` of them, or by default as many as the machine
    takes — on GPUs, ``per_gpu`` each or as many as fit in free memory at ``gpu_mb_per_trial``
    (at least one, at most ``max_per_gpu``); on the CPU, ``cpu_share`` of the cores at
    ``threads`` threads each (at least one process). Workers are spread over the GPUs.

    >>> plan_trials(3, cpu_cores=8, gpu_free_mb=(9000, 20_000), per_gpu=0,
    ...             gpu_mb_per_trial=4096, max_per_gpu=8, cpu_share=0.5, threads=1, nice=10).gpus
    (0, 1, 0)
    >>> plan_trials(None, cpu_cores=8, gpu_free_mb=(), per_gpu=0, gpu_mb_per_trial=4096,
    ...             max_per_gpu=8, cpu_share=0.5, threads=2, nice=10).workers
    2
    """
    if gpu_free_mb:
        capacity = [
            per_gpu if per_gpu > 0 else max(1, min(max_per_gpu, free // gpu_mb_per_trial))
            for free in gpu_free_mb
        ]
        # The first slot of every GPU, then the second, ...; past the capacity, round robin.
        slots = [
            gpu for slot in range(max(capacity)) for gpu, room in enumerate(capacity) if slot < room
        ]
        workers = len(slots) if requested is None else max(0, requested)
        slots += [i % len(capacity) for i in range(max(0, workers - len(slots)))]
        return TrialBudget(workers, threads, nice, tuple(slots[:workers]))
    workers = max(1, int(cpu_cores * cpu_share) // threads) if requested is None else requested
    return TrialBudget(max(0, workers), threads, nice)


def gpu_free_memory_mb() -> tuple[int, ...]:
    """Free memory (MiB) of each GPU this process may use, from ``nvidia-smi`` (which creates
    no CUDA context here); () without one."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return ()
    command = [tool, "--query-gpu=memory.free", "--format=csv,noheader,nounits"]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        if not ids or not all(v.isdigit() for v in ids):
            return ()  # hidden, or named by UUID: leave it to torch's own view
        command.append(f"--id={','.join(ids)}")
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(int(float(line)) for line in out.stdout.split() if line.strip())


def machine_budget(settings: HeadwaterSettings, requested: int | None = None) -> TrialBudget:
    """:func:`plan_trials` for this machine's cores and GPUs and these settings."""
    return plan_trials(
        requested,
        cpu_cores=len(os.sched_getaffinity(0)),
        gpu_free_mb=gpu_free_memory_mb(),
        per_gpu=settings.trial_workers_per_gpu,
        gpu_mb_per_trial=settings.trial_gpu_memory_mb,
        max_per_gpu=settings.trial_max_workers_per_gpu,
        cpu_share=settings.trial_cpu_share,
        threads=settings.trial_threads,
        nice=settings.trial_nice,
    )
