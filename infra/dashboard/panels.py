"""The operator panels: one query over the views of ``infra/ddl/002_views.sql`` each, and how to
draw it. The built-in dashboard and the Grafana dashboard are both made from this list, so the
two always show the same numbers.

A chart panel names its x column (epoch milliseconds, or a category), its y column and, when
there are several lines, the column whose values name them.

>>> panel = PANELS_BY_KEY["throughput"]
>>> panel.kind, panel.x, panel.y, panel.series
('line', 'bucket_ms', 'records_per_s', 'topic')
>>> "{db}.v_topic_throughput" in panel.sql
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from headwater.schemas.models import RETRAIN_CAP

PanelKind = Literal["line", "bar", "table"]

# Quality metrics charted by default (the live-metrics agent may publish more).
HEADLINE_METRICS = ("roc_auc", "auc", "accuracy")


@dataclass(frozen=True)
class Panel:
    """One panel: a query over the views, and how to draw its rows."""

    key: str
    title: str
    sql: str
    kind: PanelKind
    x: str = ""
    y: str = ""
    series: str = ""
    description: str = ""

    def query(self, database: str) -> str:
        return self.sql.replace("{db}", database)


def loop_sql(limit: int) -> str:
    """The loop timeline, newest first, with each minute's drift alarms of a model folded into
    one step (a drifting stream raises hundreds; the first one links to the evidence)."""
    return (
        "SELECT min(t) AS at_ms, model, stage, if(stage = 'drift', concat(toString(count()), "
        "' alarm(s), first: ', argMin(d, t)), any(d)) AS detail, any(rt) AS ref_table, "
        "argMin(ri, t) AS ref_id FROM (SELECT at_ms AS t, model, stage, detail AS d, "
        "ref_table AS rt, ref_id AS ri FROM {db}.v_loop_timeline) "
        "GROUP BY model, stage, "
        "if(stage = 'drift', toString(intDiv(t, 60000)), concat(rt, ri, toString(t))) "
        f"ORDER BY at_ms DESC, stage LIMIT {limit}"
    )


PANELS: tuple[Panel, ...] = (
    Panel(
        "throughput",
        "Records per second by topic",
        "SELECT topic, bucket_ms, records_per_s FROM {db}.v_topic_throughput "
        "ORDER BY bucket_ms DESC, topic LIMIT 2000",
        "line",
        x="bucket_ms",
        y="records_per_s",
        series="topic",
        description="10 s buckets, by each record's production time",
    ),
    Panel(
        "lag",
        "Consumer lag by group",
        "SELECT concat(group_id, ' / ', topic) AS consumer, observed_at_ms, lag "
        "FROM {db}.v_consumer_lag_history ORDER BY observed_at_ms DESC LIMIT 2000",
        "line",
        x="observed_at_ms",
        y="lag",
        series="consumer",
        description="records between committed offsets and the end of the log",
    ),
    Panel(
        "latency",
        "Event → prediction latency p95 (ms)",
        "SELECT concat(model, ' v', toString(version), ' ', route) AS version_route, bucket_ms, "
        "event_to_prediction_p95_ms FROM {db}.v_prediction_latency WHERE arrivals > 0 "
        "ORDER BY bucket_ms DESC LIMIT 2000",
        "line",
        x="bucket_ms",
        y="event_to_prediction_p95_ms",
        series="version_route",
        description="from the record's arrival on events.raw to the prediction being served",
    ),
    Panel(
        "scoring",
        "Scoring latency p99 (ms)",
        "SELECT concat(model, ' v', toString(version), ' ', route) AS version_route, bucket_ms, "
        "scoring_p99_ms FROM {db}.v_prediction_latency ORDER BY bucket_ms DESC LIMIT 2000",
        "line",
        x="bucket_ms",
        y="scoring_p99_ms",
        series="version_route",
    ),
    Panel(
        "distribution",
        "Prediction distribution by version",
        "SELECT concat(model, ' v', toString(version)) AS model_version, "
        "toString(bin_low) AS bin, sum(predictions) AS predictions "
        "FROM {db}.v_prediction_distribution GROUP BY model_version, bin "
        "ORDER BY bin, model_version",
        "bar",
        x="bin",
        y="predictions",
        series="model_version",
        description="model outputs in tenths of [0, 1]",
    ),
    Panel(
        "quality",
        "Live quality by version and route",
        "SELECT concat(model, ' v', toString(version), ' ', route, ' ', metric) AS version_route, "
        "window_end_ms, value FROM {db}.v_live_quality "
        f"WHERE metric IN ({', '.join(repr(m) for m in HEADLINE_METRICS)}) "
        "ORDER BY window_end_ms DESC LIMIT 2000",
        "line",
        x="window_end_ms",
        y="value",
        series="version_route",
        description="labels joined to predictions, per window (headline metrics; all in "
        "v_live_quality)",
    ),
    Panel(
        "drift",
        "Drift: worst statistic / threshold",
        "SELECT concat(model, ' ', kind, ' ', statistic) AS statistic, "
        "intDiv(detected_at_ms, 10000) * 10000 AS bucket_ms, "
        "max(value / if(threshold = 0, 1, threshold)) AS worst_to_threshold "
        "FROM {db}.v_drift_timeline GROUP BY statistic, bucket_ms "
        "ORDER BY bucket_ms DESC LIMIT 2000",
        "line",
        x="bucket_ms",
        y="worst_to_threshold",
        series="statistic",
        description="over all features; above 1 the threshold is crossed",
    ),
    Panel(
        "routing_weights",
        "Routing weights over time",
        "SELECT concat(model, ' v', version) AS model_version, updated_at_ms, weight "
        "FROM {db}.v_routing_weights ORDER BY updated_at_ms DESC LIMIT 2000",
        "line",
        x="updated_at_ms",
        y="weight",
        series="model_version",
    ),
    Panel(
        "deadletter",
        "Dead letters by reason",
        "SELECT concat(source_topic, ': ', reason_code) AS reason, records "
        "FROM {db}.v_deadletter_reasons ORDER BY records DESC LIMIT 50",
        "bar",
        x="reason",
        y="records",
    ),
    Panel(
        "routing",
        "Current routing",
        "SELECT model, version, weight, shadow, reason, actor, updated_at_ms "
        "FROM {db}.v_routing_current ORDER BY model, version",
        "table",
    ),
    Panel(
        "alarms",
        "Alarms: models the loop cannot fix first (retrain_cap), then open ones",
        "SELECT open, model, version, kind, statistic, feature, value, threshold, severity, "
        "detected_at_ms FROM {db}.v_drift_timeline "
        f"ORDER BY open AND statistic = '{RETRAIN_CAP}' DESC, open DESC, detected_at_ms DESC "
        "LIMIT 50",
        "table",
        description="retrain_cap: still degraded after the loop's capped retrain requests; "
        "a person must look at the model",
    ),
    Panel(
        "loop",
        "The loop: drift → retrain → canary → promote / roll back",
        loop_sql(100),
        "table",
    ),
    Panel(
        "runs",
        "Retrain and HPO runs",
        "SELECT run_id, kind, model, study, status, steps, updated_at_ms FROM {db}.v_runs "
        "ORDER BY updated_at_ms DESC LIMIT 50",
        "table",
    ),
)

PANELS_BY_KEY = {panel.key: panel for panel in PANELS}
