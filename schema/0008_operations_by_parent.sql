-- ottu-recon schema 8: the operations view answers "the operations of this
-- parent" in milliseconds.
--
-- It grouped by reference_number alone, with session_id inside the argMax, so
-- no filter on session_id could reach the table: the README's own query (the
-- operations of one parent) aggregated the whole history (37 s at 3M
-- deliveries). It now groups by (session_id, reference_number), the table's
-- key, so a filter on either reaches the table, and one on session_id reads
-- only that parent's range of the key. One row per operation, as before; a
-- reference_number that deliveries put under two parents (a re-posted body
-- with session_id changed, raised as REPLAYED_WEBHOOK for both) shows under
-- each of them, which is also how the reconciler reads it.

DROP TABLE IF EXISTS {db}.operations;

CREATE VIEW IF NOT EXISTS {db}.operations AS
SELECT reference_number,
    session_id,
    tupleElement(l, 1) AS child_session_id,
    tupleElement(l, 2) AS operation,
    tupleElement(l, 3) AS source,
    tupleElement(l, 4) AS amount,
    tupleElement(l, 5) AS txn_amount,
    tupleElement(l, 6) AS txn_currency_code,
    tupleElement(l, 7) AS txn_state,
    tupleElement(l, 8) AS result,
    tupleElement(l, 9) AS success,
    tupleElement(l, 10) AS pg_code,
    tupleElement(l, 11) AS order_no,
    tupleElement(l, 12) AS is_sandbox,
    tupleElement(l, 13) AS timestamp_utc,
    tupleElement(l, 14) AS received_at,
    tupleElement(l, 15) AS delivery_id
FROM (
    SELECT session_id, reference_number, argMax(tuple(
            child_session_id,
            operation,
            source,
            amount,
            txn_amount,
            txn_currency_code,
            txn_state,
            result,
            success,
            pg_code,
            order_no,
            is_sandbox,
            timestamp_utc,
            toTimeZone(received_at, 'UTC'),
            delivery_id), (toUInt32(timestamp_utc) <= toUInt32(received_at) + 300, is_terminal, timestamp_utc, state_rank, received_at, stream_seq)) AS l
    FROM {db}.operation_events
    GROUP BY session_id, reference_number
) AS latest_operations;
