"""The benchmark report runner: ratio extraction, missing and failing benchmarks, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from bench.__main__ import SMALL_SIZES, Outcome, ratios_of, run_all, run_one, table


def test_ratios_are_found_at_any_depth_and_targets_are_not_ratios() -> None:
    result = {
        "events": 10,
        "raw_to_faust_ratio": 4,
        "target_ratio": 0.1,
        "http": {"speedup": 2.5, "p99_ms": 3.0},
        "within_target": True,
    }
    assert ratios_of(result) == {"raw_to_faust_ratio": 4.0, "http.speedup": 2.5}
    assert ratios_of({"ratios": {"a": 1, "b": "x"}, "c_ratio": 2}) == {"a": 1.0}


@pytest.fixture
def probe() -> Iterator[list[dict[str, Any]]]:
    """An in-memory benchmark module: records the arguments its run() got."""
    calls: list[dict[str, Any]] = []
    module = types.ModuleType("bench.bench_probe")

    def run(events: int = 1, demo_summary: dict[str, Any] | None = None) -> dict[str, Any]:
        calls.append({"events": events, "demo_summary": demo_summary})
        return {"events": events, "probe_ratio": 3.0}

    module.run = run  # type: ignore[attr-defined]
    sys.modules["bench.bench_probe"] = module
    yield calls
    del sys.modules["bench.bench_probe"]


def test_run_gets_the_small_sizes_it_names(probe: list[dict[str, Any]]) -> None:
    outcomes = run_all(("bench_probe",), demo_summary={"seconds_to_detect": 1})
    assert probe == [{"events": SMALL_SIZES["events"], "demo_summary": {"seconds_to_detect": 1}}]
    assert outcomes[0].status == "ok" and outcomes[0].ratios == {"probe_ratio": 3.0}


def test_missing_and_failing_benchmarks_are_reported_not_faked() -> None:
    missing = run_one("bench_not_written_yet", lambda run: {})
    assert missing.status == "missing" and "does not exist yet" in missing.error

    def boom() -> dict[str, Any]:
        raise RuntimeError("broker went away")

    module = types.ModuleType("bench.bench_boom")
    module.run = boom  # type: ignore[attr-defined]
    sys.modules["bench.bench_boom"] = module
    try:
        failed = run_one("bench_boom", lambda run: {})
    finally:
        del sys.modules["bench.bench_boom"]
    assert failed.status == "failed" and "broker went away" in failed.error
    report = table([missing, failed, Outcome("bench_x", "ok", 1.0, {"speedup": 12.0})])
    assert "MISSING: bench/bench_not_written_yet.py" in report
    assert "FAILED: RuntimeError" in report
    assert "speedup" in report and "12" in report


def test_cli_prints_json_and_the_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "not_written_yet", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [b["status"] for b in report["benchmarks"]] == ["missing"]
    assert "MISSING" in report["table"] and "MISSING" in done.stderr
    for when in ("before", "after"):  # the machine's pace around the run, to compare runs by
        assert report["machine"][when]["python_reference_ms"] > 0
    assert "Python reference" in report["table"]
