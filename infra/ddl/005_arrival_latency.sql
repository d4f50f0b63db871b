-- The event -> prediction latency was measured from the event's own time, the application's
-- clock: events that carry simulated or replayed times (the demo's do) showed days. It is
-- measured from the record's arrival on events.raw now — the Kafka timestamp the sink stores in
-- events_raw — found through the validated event's source partition and offset. The events table
-- gets the full topic name (prefix included), as events_raw and predictions did (003, 004), so a
-- run under another topic prefix with the same offsets is never taken for this one.

ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS _topic LowCardinality(String) AFTER source_offset,
    MODIFY ORDER BY (event_type, entity_id, event_time_ms, event_id, _topic);

-- When each validated event's raw record arrived, keyed as its predictions are (a Kafka scorer's
-- request id is the event id) and named by the predictions topic of the same prefix.
CREATE OR REPLACE VIEW {db}.v_event_arrivals AS
SELECT e.event_id AS event_id, e.entity_id AS entity_id, e.event_time_ms AS event_time_ms,
       concat(replaceRegexpOne(e._topic, 'events$', ''), 'predictions') AS predictions_topic,
       r.kafka_timestamp_ms AS arrived_at_ms
FROM (SELECT * FROM {db}.events FINAL) AS e
INNER JOIN (SELECT * FROM {db}.events_raw FINAL) AS r
    ON r._partition = e.source_partition AND r._offset = e.source_offset
   AND r._topic = concat(replaceRegexpOne(e._topic, 'events$', ''), 'events.raw');

-- Event -> prediction latency (arrival on events.raw to served; predictions with no raw event,
-- such as HTTP requests, count only in `predictions` and the scoring latency) and scoring
-- latency, per version and route.
CREATE OR REPLACE VIEW {db}.v_prediction_latency AS
SELECT p.model AS model, p.version AS version, p.route AS route,
       intDiv(p.served_at_ms, 10000) * 10000 AS bucket_ms,
       count() AS predictions,
       countIf(a.arrived_at_ms > 0) AS arrivals,
       quantileIf(0.5)(p.served_at_ms - a.arrived_at_ms, a.arrived_at_ms > 0)
           AS event_to_prediction_p50_ms,
       quantileIf(0.95)(p.served_at_ms - a.arrived_at_ms, a.arrived_at_ms > 0)
           AS event_to_prediction_p95_ms,
       quantileIf(0.99)(p.served_at_ms - a.arrived_at_ms, a.arrived_at_ms > 0)
           AS event_to_prediction_p99_ms,
       quantile(0.5)(p.latency_ms) AS scoring_p50_ms,
       quantile(0.95)(p.latency_ms) AS scoring_p95_ms,
       quantile(0.99)(p.latency_ms) AS scoring_p99_ms,
       countIf(p.fallback) AS fallbacks
FROM (SELECT * FROM {db}.predictions FINAL) AS p
LEFT JOIN {db}.v_event_arrivals AS a
    ON a.event_id = p.request_id AND a.entity_id = p.entity_id
   AND a.event_time_ms = p.event_time_ms AND a.predictions_topic = p._topic
GROUP BY model, version, route, bucket_ms;
