-- One table per topic of DESIGN.md. ReplacingMergeTree ordered by each record's natural identity,
-- so a redelivered record replaces itself instead of becoming a duplicate row (read with FINAL).
-- _partition/_offset say where the row came from; _ingested_at when the sink wrote it.

CREATE TABLE IF NOT EXISTS {db}.events_raw (
    key String, value String, kafka_timestamp_ms Int64,
    _partition Int32, _offset Int64, _ingested_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY (_partition, _offset);

CREATE TABLE IF NOT EXISTS {db}.events (
    event_id String, entity_id String, event_type LowCardinality(String), event_time_ms Int64,
    numeric Map(String, Float64), categorical Map(String, String),
    source_partition Int32, source_offset Int64,
    _partition Int32, _offset Int64, _ingested_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY (event_type, entity_id, event_time_ms, event_id);

CREATE TABLE IF NOT EXISTS {db}.deadletter (
    source_topic LowCardinality(String), source_partition Int32, source_offset Int64,
    reason_code LowCardinality(String), reason String,
    original_key Nullable(String), original_value Nullable(String), failed_at_ms Int64,
    _partition Int32, _offset Int64, _ingested_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY (source_topic, source_partition, source_offset, reason_code);

CREATE TABLE IF NOT EXISTS {db}.features (
    entity_id String, feature_set LowCardinality(String), feature_set_version Int32,
    event_id String, event_time_ms Int64, computed_at_ms Int64, values Map(String, Float64),
    _partition Int32, _offset Int64, _ingested_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
  ORDER BY (feature_set, feature_set_version, entity_id, event_time_ms, event_id);

CREATE TABLE IF NOT EXISTS {db}.predictions (
    request_id String, entity_id String, model LowCardinality(String), version Int32,
    route LowCardinality(String), output Float64, features Map(String, Float64),
    feature_set LowCardinality(String), feature_set_version Int32,
    event_time_ms Int64, served_at_ms Int64, latency_ms Float64, fallback Bool,
    fallback_reason String, source LowCardinality(String),
    _partition Int32, _offset Int64, _ingested_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY (model, request_id, route, version);

CREATE TABLE IF NOT EXISTS {db}.labels (
    request_id String, entity_id String, event_id String, label Float64,
    event_time_ms Int64, labeled_at_ms Int64,
    _partition Int32, _offset Int64, _ingested_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY (entity_id, event_time_ms, request_id, event_id);

CREATE TABLE IF NOT EXISTS {db}.metrics (
    model LowCardinality(String), version Int32, route LowCardinality(String),
    metric LowCardinality(String), value Float64, window String,
    window_start_ms Int64, window_end_ms Int64, count Int64,
    _partition Int32, _offset Int64, _ingested_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY (model, version, route, metric, window, window_start_ms);

CREATE TABLE IF NOT EXISTS {db}.drift (
    alarm_id String, model LowCardinality(String), version Int32, feature String,
    kind LowCardinality(String), statistic LowCardinality(String), value Float64,
    threshold Float64, window_size Int64, window_start_ms Int64, window_end_ms Int64,
    severity LowCardinality(String), detected_at_ms Int64,
    _partition Int32, _offset Int64, _ingested_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY (model, detected_at_ms, alarm_id);

CREATE TABLE IF NOT EXISTS {db}.retrain_requests (
    request_id String, model LowCardinality(String), reason String, alarm_ids Array(String),
    requested_at_ms Int64, trials Int32,
    _partition Int32, _offset Int64, _ingested_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY (model, requested_at_ms, request_id);

CREATE TABLE IF NOT EXISTS {db}.runs (
    run_id String, kind LowCardinality(String), model LowCardinality(String), study String,
    trial_number Int32, status LowCardinality(String), step Int64,
    params Map(String, String), metrics Map(String, Float64), artifacts Map(String, String),
    lineage Map(String, String), code_revision String, message String, event_time_ms Int64,
    _partition Int32, _offset Int64, _ingested_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY (run_id, event_time_ms, status, step);

CREATE TABLE IF NOT EXISTS {db}.trials (
    study String, trial_number Int32, model LowCardinality(String), params Map(String, String),
    dataset String, attempt Int32, sent_at_ms Int64,
    _partition Int32, _offset Int64, _ingested_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY (study, trial_number, attempt);

CREATE TABLE IF NOT EXISTS {db}.model_versions (
    model LowCardinality(String), version Int32, action LowCardinality(String), run_id String,
    artifact_sha256 String, metrics Map(String, Float64), signature Map(String, String),
    alias String, reason String, actor String, event_time_ms Int64,
    _partition Int32, _offset Int64, _ingested_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY (model, event_time_ms, version, action);

CREATE TABLE IF NOT EXISTS {db}.routing (
    model LowCardinality(String), weights Map(String, Float64), shadows Array(Int32),
    reason String, actor String, updated_at_ms Int64,
    _partition Int32, _offset Int64, _ingested_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY (model, updated_at_ms);
