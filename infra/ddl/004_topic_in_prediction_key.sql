-- Request ids are the application's (or the event's) ids, so runs under different topic prefixes
-- can repeat them (two demo runs of one seed do): keyed by content alone, one run's predictions
-- replaced the other's. The full topic name joins the key, as for events_raw and deadletter (003).

ALTER TABLE {db}.predictions
    ADD COLUMN IF NOT EXISTS _topic LowCardinality(String) AFTER source,
    MODIFY ORDER BY (model, request_id, route, version, _topic);
