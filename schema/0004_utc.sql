-- ottu-recon schema 4: times in UTC whatever the server's time zone.
--
-- A bare DateTime is shown, and turned into a date, in the server's zone (the
-- compose ClickHouse is not in UTC): every column users read or the product
-- turns into a day becomes DateTime('UTC'). ClickHouse 18.16 cannot change
-- the type of a key column (received_at partitions the event tables,
-- started_at orders recon_runs, updated_at versions merchant_orders): those
-- keep their type, hold the same instants, and the views show received_at as
-- DateTime('UTC'). MODIFY COLUMN to the type a column has is a no-op, so the
-- file stays safe to apply again.

ALTER TABLE webhooks_raw MODIFY COLUMN stored_at DateTime('UTC');
ALTER TABLE payment_events MODIFY COLUMN timestamp_utc DateTime('UTC');
ALTER TABLE payment_events MODIFY COLUMN stored_at DateTime('UTC') DEFAULT received_at;
ALTER TABLE operation_events MODIFY COLUMN timestamp_utc DateTime('UTC');
ALTER TABLE operation_events MODIFY COLUMN stored_at DateTime('UTC') DEFAULT received_at;
ALTER TABLE rejected_webhooks MODIFY COLUMN stored_at DateTime('UTC');
ALTER TABLE unreadable_webhooks MODIFY COLUMN stored_at DateTime('UTC');
ALTER TABLE merchant_orders MODIFY COLUMN inserted_at DateTime('UTC') DEFAULT now();
ALTER TABLE findings_log MODIFY COLUMN first_seen DateTime('UTC');
ALTER TABLE findings_log MODIFY COLUMN last_seen DateTime('UTC');
ALTER TABLE findings_log MODIFY COLUMN resolved_at Nullable(DateTime('UTC'));
ALTER TABLE findings_log MODIFY COLUMN alerted_at Nullable(DateTime('UTC'));
ALTER TABLE findings_log MODIFY COLUMN published_at Nullable(DateTime('UTC'));
ALTER TABLE recon_runs MODIFY COLUMN finished_at DateTime('UTC');
ALTER TABLE recon_runs MODIFY COLUMN watermark DateTime('UTC') DEFAULT started_at;

-- The views again, over the new types (DROP TABLE drops a view on every
-- version), received_at shown in UTC.
DROP TABLE IF EXISTS {db}.payments;

CREATE VIEW IF NOT EXISTS {db}.payments AS
SELECT
    session_id, order_no, reference_number, state, result, amount, currency_code,
    gateway_account, gateway_name, is_sandbox, timestamp_utc, payment_type,
    paid_amount, settled_amount, refunded_amount, voided_amount, remaining_amount,
    toTimeZone(received_at, 'UTC') AS received_at, delivery_id
FROM {db}.payment_events
ORDER BY session_id, is_terminal DESC, timestamp_utc DESC, state_rank DESC, received_at DESC, stream_seq DESC
LIMIT 1 BY session_id;

DROP TABLE IF EXISTS {db}.operations;

CREATE VIEW IF NOT EXISTS {db}.operations AS
SELECT
    reference_number, session_id, child_session_id, operation, source, amount,
    txn_amount, txn_currency_code, txn_state, result, success, pg_code, order_no,
    is_sandbox, timestamp_utc, toTimeZone(received_at, 'UTC') AS received_at, delivery_id
FROM {db}.operation_events
ORDER BY reference_number, is_terminal DESC, timestamp_utc DESC, state_rank DESC, received_at DESC, stream_seq DESC
LIMIT 1 BY reference_number;

DROP TABLE IF EXISTS {db}.findings;

CREATE VIEW IF NOT EXISTS {db}.findings AS
SELECT session_id, code, severity, status, first_seen, last_seen, resolved_at, alerted_at, detail, run_id, published_at
FROM {db}.findings_log
ORDER BY session_id, code, version DESC
LIMIT 1 BY session_id, code;
