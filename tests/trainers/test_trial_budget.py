"""How many trial processes a machine runs: several per GPU as fit, a share of the CPU without."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.trainers.trial_budget import TrialBudget, machine_budget, plan_trials


def _plan(
    requested: int | None,
    cores: int,
    gpus: tuple[int, ...],
    *,
    per_gpu: int = 0,
    cpu_share: float = 0.5,
    threads: int = 1,
) -> TrialBudget:
    return plan_trials(
        requested,
        cpu_cores=cores,
        gpu_free_mb=gpus,
        per_gpu=per_gpu,
        gpu_mb_per_trial=4096,
        max_per_gpu=8,
        cpu_share=cpu_share,
        threads=threads,
        nice=10,
    )


def test_gpus_take_as_many_trials_as_fit_in_their_free_memory() -> None:
    budget = _plan(None, 16, (80_000, 10_000, 1_000))
    assert budget.workers == 8 + 2 + 1  # capped at 8; 10 GB / 4 GB; at least one
    assert budget.gpus.count(0) == 8 and budget.gpus.count(1) == 2 and budget.gpus.count(2) == 1
    assert budget.gpus[:3] == (0, 1, 2)  # spread: the first trials go to different GPUs


def test_a_fixed_number_per_gpu_and_an_explicit_count_win() -> None:
    assert _plan(None, 4, (500, 500), per_gpu=3).gpus == (0, 1) * 3
    assert _plan(2, 4, (80_000,)).workers == 2
    beyond = _plan(5, 4, (4096, 4096))
    assert beyond.gpus == (0, 1, 0, 1, 0)


@pytest.mark.parametrize(
    ("cores", "share", "threads", "expected"),
    [(2, 0.5, 1, 1), (16, 0.5, 1, 8), (16, 0.5, 4, 2), (16, 1.0, 1, 16), (1, 0.5, 1, 1)],
)
def test_without_a_gpu_trials_leave_the_stream_its_share_of_the_cores(
    cores: int, share: float, threads: int, expected: int
) -> None:
    budget = _plan(None, cores, (), cpu_share=share, threads=threads)
    assert budget == TrialBudget(expected, threads, 10, ())


def test_an_explicit_count_is_kept_on_the_cpu() -> None:
    assert _plan(2, 2, ()).workers == 2
    assert _plan(0, 2, ()).workers == 0


def test_the_machine_budget_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")  # no nvidia-smi: the CPU budget
    settings = HeadwaterSettings(home=Path("/tmp/hw-budget"), trial_cpu_share=1.0, trial_nice=5)
    budget = machine_budget(settings)
    assert budget.workers == len(os.sched_getaffinity(0))
    assert budget.nice == 5 and budget.gpus == ()


def test_a_trial_process_takes_its_threads_and_nice_level() -> None:
    script = (
        "import os, torch; from pathlib import Path;"
        "from headwater.core.settings import HeadwaterSettings;"
        "from headwater.trainers.trial_worker import take_budget;"
        "take_budget(HeadwaterSettings(home=Path('/tmp/hw-budget'), trial_threads=2, "
        "trial_nice=7)); print(os.nice(0), torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    nice, threads = out.stdout.split()
    assert int(nice) == max(7, os.nice(0)) and int(threads) == 2
