-- events_raw and deadletter rows are identified by where the sink read them, not by their content:
-- keyed by partition and offset alone, a run under another topic prefix (its own topics, the same
-- offsets) replaced their rows. The full topic name (prefix included) joins their keys. Rows
-- written before this migration keep an empty _topic.

ALTER TABLE {db}.events_raw
    ADD COLUMN IF NOT EXISTS _topic LowCardinality(String) AFTER kafka_timestamp_ms,
    MODIFY ORDER BY (_partition, _offset, _topic);

ALTER TABLE {db}.deadletter
    ADD COLUMN IF NOT EXISTS _topic LowCardinality(String) AFTER failed_at_ms,
    MODIFY ORDER BY (source_topic, source_partition, source_offset, reason_code, _topic);
