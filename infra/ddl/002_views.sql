-- Operator views over the topic tables of 001: the same SQL serves the built-in dashboard,
-- Grafana and `headwater status`, on chDB and on a ClickHouse server. Each reads its tables with
-- FINAL so a redelivered record counts once. Times stay in epoch milliseconds (Int64) like the
-- events; `bucket_ms` columns are 10-second buckets, small enough for a demo run to draw a line.
-- Callers filter by time themselves (WHERE bucket_ms >= ...) on long-lived warehouses.

-- Kafka end offsets and consumer-group committed offsets, sampled by infra.consumer_lag: the log
-- lives in Kafka, so lag reaches the warehouse as periodic snapshots.
CREATE TABLE IF NOT EXISTS {db}.consumer_lag (
    observed_at_ms Int64, group_id LowCardinality(String), topic LowCardinality(String),
    partition Int32, end_offset Int64, committed_offset Int64, lag Int64
) ENGINE = MergeTree ORDER BY (group_id, topic, partition, observed_at_ms);

-- Records per topic in 10 s buckets, timed by when the sink landed them (one clock for every
-- topic: event times may be an application's own, or a replay's).
CREATE VIEW IF NOT EXISTS {db}.v_topic_throughput AS
SELECT topic, intDiv(at_ms, 10000) * 10000 AS bucket_ms, count() AS records,
       count() / 10 AS records_per_s
FROM (
    SELECT 'events.raw' AS topic, toInt64(toUnixTimestamp64Milli(_ingested_at)) AS at_ms FROM {db}.events_raw FINAL
    UNION ALL SELECT 'events', toInt64(toUnixTimestamp64Milli(_ingested_at)) FROM {db}.events FINAL
    UNION ALL SELECT 'deadletter', toInt64(toUnixTimestamp64Milli(_ingested_at)) FROM {db}.deadletter FINAL
    UNION ALL SELECT 'features', toInt64(toUnixTimestamp64Milli(_ingested_at)) FROM {db}.features FINAL
    UNION ALL SELECT 'predictions', toInt64(toUnixTimestamp64Milli(_ingested_at)) FROM {db}.predictions FINAL
    UNION ALL SELECT 'labels', toInt64(toUnixTimestamp64Milli(_ingested_at)) FROM {db}.labels FINAL
    UNION ALL SELECT 'metrics', toInt64(toUnixTimestamp64Milli(_ingested_at)) FROM {db}.metrics FINAL
    UNION ALL SELECT 'drift', toInt64(toUnixTimestamp64Milli(_ingested_at)) FROM {db}.drift FINAL
    UNION ALL SELECT 'retrain-requests', toInt64(toUnixTimestamp64Milli(_ingested_at)) FROM {db}.retrain_requests FINAL
    UNION ALL SELECT 'runs', toInt64(toUnixTimestamp64Milli(_ingested_at)) FROM {db}.runs FINAL
    UNION ALL SELECT 'trials', toInt64(toUnixTimestamp64Milli(_ingested_at)) FROM {db}.trials FINAL
    UNION ALL SELECT 'model-versions', toInt64(toUnixTimestamp64Milli(_ingested_at)) FROM {db}.model_versions FINAL
    UNION ALL SELECT 'routing', toInt64(toUnixTimestamp64Milli(_ingested_at)) FROM {db}.routing FINAL
)
GROUP BY topic, bucket_ms;

-- The latest lag snapshot per consumer group, topic and partition.
CREATE VIEW IF NOT EXISTS {db}.v_consumer_lag AS
SELECT group_id, topic, partition, max(observed_at_ms) AS last_observed_at_ms,
       argMax(end_offset, observed_at_ms) AS end_offset,
       argMax(committed_offset, observed_at_ms) AS committed_offset,
       argMax(lag, observed_at_ms) AS lag
FROM {db}.consumer_lag
GROUP BY group_id, topic, partition;

-- Total lag per consumer group and topic over time (sum over partitions of each snapshot).
CREATE VIEW IF NOT EXISTS {db}.v_consumer_lag_history AS
SELECT group_id, topic, observed_at_ms, sum(lag) AS lag
FROM {db}.consumer_lag
GROUP BY group_id, topic, observed_at_ms;

-- Event -> prediction latency and scoring latency: v_prediction_latency, in 005_arrival_latency.sql.

-- Histogram of model outputs (10 bins over [0, 1], outside values clamped) per version and route.
CREATE VIEW IF NOT EXISTS {db}.v_prediction_distribution AS
SELECT model, version, route,
       least(greatest(floor(output * 10), 0), 9) / 10 AS bin_low, count() AS predictions,
       avg(output) AS mean_output
FROM {db}.predictions FINAL
GROUP BY model, version, route, bin_low;

-- Live quality per version and route: every window of the `metrics` topic.
CREATE VIEW IF NOT EXISTS {db}.v_live_quality AS
SELECT model, version, route, metric, window, window_start_ms, window_end_ms, value, count
FROM {db}.metrics FINAL;

-- The latest window of each metric per version and route.
CREATE VIEW IF NOT EXISTS {db}.v_live_quality_latest AS
SELECT model, version, route, metric, max(window_end_ms) AS last_window_end_ms,
       argMax(value, window_end_ms) AS value, argMax(count, window_end_ms) AS count
FROM {db}.metrics FINAL
GROUP BY model, version, route, metric;

-- Drift statistics over time: each record with whether it crossed its threshold, and whether a
-- later promotion or rollback of the model resolved it (an alarm stays open until then).
CREATE VIEW IF NOT EXISTS {db}.v_drift_timeline AS
SELECT d.alarm_id AS alarm_id, d.model AS model, d.version AS version, d.feature AS feature,
       d.kind AS kind, d.statistic AS statistic, d.value AS value, d.threshold AS threshold,
       d.severity AS severity, d.detected_at_ms AS detected_at_ms,
       d.window_start_ms AS window_start_ms, d.window_end_ms AS window_end_ms,
       d.value >= d.threshold AS exceeded,
       d.detected_at_ms > coalesce(r.resolved_at_ms, 0) AS open
FROM {db}.drift AS d FINAL
LEFT JOIN (
    SELECT model, max(event_time_ms) AS resolved_at_ms
    FROM {db}.model_versions FINAL
    WHERE action IN ('promoted', 'rolled_back')
    GROUP BY model
) AS r ON d.model = r.model;

-- Alarms not yet answered by a promotion or rollback.
CREATE VIEW IF NOT EXISTS {db}.v_open_alarms AS
SELECT alarm_id, model, version, feature, kind, statistic, value, threshold, severity,
       detected_at_ms
FROM {db}.v_drift_timeline
WHERE open;

-- Routing weights over time, one row per version and change.
CREATE VIEW IF NOT EXISTS {db}.v_routing_weights AS
SELECT model, updated_at_ms, version, weight, has(shadows, toInt32OrZero(version)) AS shadow,
       reason, actor
FROM {db}.routing FINAL
ARRAY JOIN mapKeys(weights) AS version, mapValues(weights) AS weight;

-- The current routing table: the latest weights per model and version.
CREATE VIEW IF NOT EXISTS {db}.v_routing_current AS
SELECT w.model AS model, w.version AS version, w.weight AS weight, w.shadow AS shadow,
       w.updated_at_ms AS updated_at_ms, w.reason AS reason, w.actor AS actor
FROM {db}.v_routing_weights AS w
INNER JOIN (
    SELECT model, max(updated_at_ms) AS latest FROM {db}.routing FINAL GROUP BY model
) AS l ON w.model = l.model AND w.updated_at_ms = l.latest;

-- Every lifecycle event of every model version, oldest first when ordered by event_time_ms.
CREATE VIEW IF NOT EXISTS {db}.v_model_version_timeline AS
SELECT model, version, action, event_time_ms, run_id, alias, reason, actor, metrics
FROM {db}.model_versions FINAL;

-- Rejected records by source topic and reason, with one example message.
CREATE VIEW IF NOT EXISTS {db}.v_deadletter_reasons AS
SELECT source_topic, reason_code, count() AS records, any(reason) AS example,
       min(failed_at_ms) AS first_failed_at_ms, max(failed_at_ms) AS last_failed_at_ms
FROM {db}.deadletter FINAL
GROUP BY source_topic, reason_code;

-- Retrain requests with the number of drift alarms that triggered each.
CREATE VIEW IF NOT EXISTS {db}.v_retrain_requests AS
SELECT request_id, model, reason, length(alarm_ids) AS alarms, alarm_ids, trials,
       requested_at_ms
FROM {db}.retrain_requests FINAL;

-- Training runs and HPO trials: the latest status of each with its first and last event.
CREATE VIEW IF NOT EXISTS {db}.v_runs AS
SELECT run_id, any(kind) AS kind, any(model) AS model, any(study) AS study,
       any(trial_number) AS trial_number,
       argMax(status, (event_time_ms, step)) AS status,
       argMax(metrics, (event_time_ms, step)) AS metrics,
       argMax(message, (event_time_ms, step)) AS message,
       min(event_time_ms) AS started_at_ms, max(event_time_ms) AS updated_at_ms,
       max(step) AS steps
FROM {db}.runs FINAL
GROUP BY run_id;

-- HPO studies: trial counts by outcome.
CREATE VIEW IF NOT EXISTS {db}.v_hpo_studies AS
SELECT study, any(model) AS model, count() AS trials,
       countIf(status = 'completed') AS completed, countIf(status = 'failed') AS failed,
       countIf(status = 'pruned') AS pruned,
       countIf(status IN ('started', 'running')) AS running,
       min(started_at_ms) AS first_started_at_ms, max(updated_at_ms) AS last_updated_at_ms
FROM {db}.v_runs
WHERE kind = 'trial' AND study != ''
GROUP BY study;

-- The closed loop as one timeline: drift -> retrain -> run -> version -> canary -> promote or
-- roll back -> routing. `ref_table`/`ref_id` name the evidence row behind each step.
CREATE VIEW IF NOT EXISTS {db}.v_loop_timeline AS
SELECT at_ms, model, stage, detail, ref_table, ref_id FROM (
    SELECT detected_at_ms AS at_ms, model, 'drift' AS stage,
           concat(severity, ' ', kind, ' ', statistic, if(feature = '', '', concat(' on ', feature)),
                  ' = ', toString(round(value, 4)), ' (threshold ',
                  toString(round(threshold, 4)), ')') AS detail,
           'drift' AS ref_table, alarm_id AS ref_id
    FROM {db}.drift FINAL
    UNION ALL
    SELECT requested_at_ms, model, 'retrain',
           concat(reason, ' (', toString(length(alarm_ids)), ' alarms)'),
           'retrain_requests', request_id
    FROM {db}.retrain_requests FINAL
    UNION ALL
    SELECT updated_at_ms, model, concat(kind, ' ', status),
           if(message != '', message,
              arrayStringConcat(arrayMap((k, v) -> concat(k, '=', toString(round(v, 4))),
                                         mapKeys(metrics), mapValues(metrics)), ' ')),
           'runs', run_id
    FROM {db}.v_runs
    WHERE status IN ('completed', 'failed')
    UNION ALL
    SELECT event_time_ms, model, action,
           concat('v', toString(version), if(reason = '', '', concat(': ', reason))),
           'model_versions', concat(model, '@', toString(version))
    FROM {db}.model_versions FINAL
    UNION ALL
    SELECT updated_at_ms, model, 'routing',
           arrayStringConcat(arrayMap((k, v) -> concat('v', k, '=', toString(v)),
                                      mapKeys(weights), mapValues(weights)), ' '),
           'routing', concat(model, '@', toString(updated_at_ms))
    FROM {db}.routing FINAL
);
