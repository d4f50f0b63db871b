-- A dead letter keeps at most 64 KiB of its original value (schemas/dead_letters.py), so a record
-- over the broker's limit can still be rejected; the original's full size and SHA-256 say what was
-- cut. Rows written before this migration read -1 and ''.

ALTER TABLE {db}.deadletter
    ADD COLUMN IF NOT EXISTS original_size Int64 DEFAULT -1 AFTER failed_at_ms,
    ADD COLUMN IF NOT EXISTS original_sha256 String DEFAULT '' AFTER original_size;
