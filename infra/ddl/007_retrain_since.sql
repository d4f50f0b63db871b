-- A retrain request says from which event time on it trains (the detected change; 0: all rows).

ALTER TABLE {db}.retrain_requests
    ADD COLUMN IF NOT EXISTS since_ms Int64 DEFAULT 0 AFTER trials;
