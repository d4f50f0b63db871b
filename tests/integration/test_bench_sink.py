"""The sink benchmark runs at a tiny size on the real engine and reports its ratios (no timing
asserted)."""

from __future__ import annotations

import pytest

from bench.bench_sink import TOPICS, run
from headwater.infra.warehouse import ChdbWarehouse

pytestmark = pytest.mark.integration


def test_the_sink_benchmark_inserts_every_row_and_reports_its_ratios(
    warehouse: ChdbWarehouse,
) -> None:
    before = {
        t: int(warehouse.query(f"SELECT count() FROM headwater.{t}").scalar()) for t in TOPICS
    }
    result = run(rows=300, per_row_rows=5, batch=100, engine=warehouse)
    assert {
        "sink_rows_per_s_to_target_ratio",
        "sink_to_per_row_speedup",
        "host_rows_per_s_to_target_ratio",
        "sink_one_bad_per_batch_to_clean_ratio",
    } <= set(result["ratios"])
    assert all(v > 0 for v in result["ratios"].values())
    assert isinstance(result["native_columns"], bool)
    for topic in TOPICS:
        after = int(warehouse.query(f"SELECT count() FROM headwater.{topic}").scalar())
        assert after - before[topic] >= 300  # the batched rows of both passes, not yet merged
        assert result["chdb"][topic]["batched"]["rows_per_s"] > 0
        assert result["chdb"][topic]["one_bad_per_batch"]["rows_per_s"] > 0
