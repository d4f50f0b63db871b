"""The training benchmark runs at a tiny size and reports its ratios (no timing asserted)."""

from __future__ import annotations

from bench.bench_training import run


def test_the_training_benchmark_reports_every_ratio() -> None:
    result = run(
        samples=600,
        epochs=1,
        trials=2,
        seeds=1,
        search_samples=200,
        repeats=1,
        device="cpu",
        large_samples=500,
        large_batches=(64, 128),
    )
    assert set(result["ratios"]) == {
        "trainer_to_bare_ratio",
        "cpu_trainer_vs_bare_b64_ratio",
        "cpu_trainer_vs_bare_b128_ratio",
        "tpe_to_random_loss_ratio",
    }
    assert result["large"]["cpu_b64"]["train_rows"] == 400
    assert result["large"]["cpu_b64"]["features"] == 32
    assert result["trainer"]["trainer_samples_per_s"] > 0
    assert result["trainer"]["train_rows"] == 480
    assert result["search"]["trials"] == 2
