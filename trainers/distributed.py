"""Launching a training job on N processes with torchrun (``torch.distributed.run``).

Each rank runs :mod:`headwater.trainers.job`; gloo on CPUs, NCCL on GPUs. A single process skips
torchrun.

>>> command = job_command(2, ["--out", "o"])
>>> command[1:6]
['-m', 'torch.distributed.run', '--standalone', '--nnodes=1', '--nproc-per-node=2']
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from headwater.trainers.errors import TrainerError


def job_command(nproc: int, job_args: Sequence[str]) -> list[str]:
    """The command line that runs the job on ``nproc`` processes of this machine."""
    if nproc < 1:
        raise TrainerError(f"--nproc must be at least 1, got {nproc}")
    if nproc == 1:
        return [sys.executable, "-m", "headwater.trainers.job", *job_args]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        f"--nproc-per-node={nproc}",
        "-m",
        "headwater.trainers.job",
        *job_args,
    ]


def run_distributed(
    nproc: int, job_args: Sequence[str], timeout_s: float = 3600.0
) -> subprocess.CompletedProcess[str]:
    """Run the job on ``nproc`` processes and wait; a failed rank fails the launch."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # ranks share the cores; don't oversubscribe them
    try:
        done = subprocess.run(
            job_command(nproc, job_args),
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise TrainerError(f"training on {nproc} processes ran past {timeout_s:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-2000:]
        raise TrainerError(f"training on {nproc} processes failed ({done.returncode}):\n{tail}")
    return done
