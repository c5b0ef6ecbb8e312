-- ottu-recon schema 7: views that answer a lookup without sorting the table.
--
-- The views were ORDER BY ... LIMIT 1 BY: exact, but nothing can push a filter
-- through them, so one payment by session_id sorted the whole history. Now
-- each is a GROUP BY on its key with argMax over the deliveries' order (the
-- same as the reconciler's: a forged future timestamp_utc ranks last, then
-- terminal first, the later timestamp_utc, the state's rank, the later
-- arrival); argMax of a tuple keeps NULLs (a bare argMax would skip them).
-- Still one row each and exact before merges, no FINAL needed. A filter on
-- the key (session_id, reference_number, session_id and code) reaches the
-- table: by default on ClickHouse 20+, with enable_optimize_predicate_expression
-- = 1 on older servers.

DROP TABLE IF EXISTS {db}.payments;

CREATE VIEW IF NOT EXISTS {db}.payments AS
SELECT session_id,
    tupleElement(l, 1) AS order_no,
    tupleElement(l, 2) AS reference_number,
    tupleElement(l, 3) AS state,
    tupleElement(l, 4) AS result,
    tupleElement(l, 5) AS amount,
    tupleElement(l, 6) AS currency_code,
    tupleElement(l, 7) AS gateway_account,
    tupleElement(l, 8) AS gateway_name,
    tupleElement(l, 9) AS is_sandbox,
    tupleElement(l, 10) AS timestamp_utc,
    tupleElement(l, 11) AS payment_type,
    tupleElement(l, 12) AS paid_amount,
    tupleElement(l, 13) AS settled_amount,
    tupleElement(l, 14) AS refunded_amount,
    tupleElement(l, 15) AS voided_amount,
    tupleElement(l, 16) AS remaining_amount,
    tupleElement(l, 17) AS received_at,
    tupleElement(l, 18) AS delivery_id
FROM (
    SELECT session_id, argMax(tuple(
            order_no,
            reference_number,
            state,
            result,
            amount,
            currency_code,
            gateway_account,
            gateway_name,
            is_sandbox,
            timestamp_utc,
            payment_type,
            paid_amount,
            settled_amount,
            refunded_amount,
            voided_amount,
            remaining_amount,
            toTimeZone(received_at, 'UTC'),
            delivery_id), (toUInt32(timestamp_utc) <= toUInt32(received_at) + 300, is_terminal, timestamp_utc, state_rank, received_at, stream_seq)) AS l
    FROM {db}.payment_events
    GROUP BY session_id
) AS latest_payments;

DROP TABLE IF EXISTS {db}.operations;

CREATE VIEW IF NOT EXISTS {db}.operations AS
SELECT reference_number,
    tupleElement(l, 1) AS session_id,
    tupleElement(l, 2) AS child_session_id,
    tupleElement(l, 3) AS operation,
    tupleElement(l, 4) AS source,
    tupleElement(l, 5) AS amount,
    tupleElement(l, 6) AS txn_amount,
    tupleElement(l, 7) AS txn_currency_code,
    tupleElement(l, 8) AS txn_state,
    tupleElement(l, 9) AS result,
    tupleElement(l, 10) AS success,
    tupleElement(l, 11) AS pg_code,
    tupleElement(l, 12) AS order_no,
    tupleElement(l, 13) AS is_sandbox,
    tupleElement(l, 14) AS timestamp_utc,
    tupleElement(l, 15) AS received_at,
    tupleElement(l, 16) AS delivery_id
FROM (
    SELECT reference_number, argMax(tuple(
            session_id,
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
    GROUP BY reference_number
) AS latest_operations;

DROP TABLE IF EXISTS {db}.findings;

CREATE VIEW IF NOT EXISTS {db}.findings AS
SELECT session_id, code,
    tupleElement(l, 1) AS severity,
    tupleElement(l, 2) AS status,
    tupleElement(l, 3) AS first_seen,
    tupleElement(l, 4) AS last_seen,
    tupleElement(l, 5) AS resolved_at,
    tupleElement(l, 6) AS alerted_at,
    tupleElement(l, 7) AS detail,
    tupleElement(l, 8) AS run_id,
    tupleElement(l, 9) AS published_at,
    tupleElement(l, 10) AS confirmation
FROM (
    SELECT session_id, code, argMax(tuple(
            severity,
            status,
            first_seen,
            last_seen,
            resolved_at,
            alerted_at,
            detail,
            run_id,
            published_at,
            confirmation), version) AS l
    FROM {db}.findings_log
    GROUP BY session_id, code
) AS latest_findings;
