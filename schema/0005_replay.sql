-- ottu-recon schema 5: a forged timestamp_utc cannot make a delivery the latest.
--
-- timestamp_utc is signed by neither of Ottu's schemes, and Ottu stamps it
-- before it sends. A delivery whose timestamp_utc is later than its arrival
-- plus 5 minutes of clock skew ranks below every other, as in the reconciler
-- (internal/clickhouse, latest): a re-posted body with a forged future time
-- never becomes the parent's or the operation's latest state.

DROP TABLE IF EXISTS {db}.payments;

CREATE VIEW IF NOT EXISTS {db}.payments AS
SELECT
    session_id, order_no, reference_number, state, result, amount, currency_code,
    gateway_account, gateway_name, is_sandbox, timestamp_utc, payment_type,
    paid_amount, settled_amount, refunded_amount, voided_amount, remaining_amount,
    toTimeZone(received_at, 'UTC') AS received_at, delivery_id
FROM {db}.payment_events
ORDER BY session_id, toUInt32(timestamp_utc) <= toUInt32(received_at) + 300 DESC, is_terminal DESC, timestamp_utc DESC, state_rank DESC, received_at DESC, stream_seq DESC
LIMIT 1 BY session_id;

DROP TABLE IF EXISTS {db}.operations;

CREATE VIEW IF NOT EXISTS {db}.operations AS
SELECT
    reference_number, session_id, child_session_id, operation, source, amount,
    txn_amount, txn_currency_code, txn_state, result, success, pg_code, order_no,
    is_sandbox, timestamp_utc, toTimeZone(received_at, 'UTC') AS received_at, delivery_id
FROM {db}.operation_events
ORDER BY reference_number, toUInt32(timestamp_utc) <= toUInt32(received_at) + 300 DESC, is_terminal DESC, timestamp_utc DESC, state_rank DESC, received_at DESC, stream_seq DESC
LIMIT 1 BY reference_number;

