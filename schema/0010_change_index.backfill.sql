-- ottu-recon schema 10, backfill: what the materialized views of
-- 0010_change_index.sql would have written for the rows stored before they
-- existed. `reconcile migrate` runs each statement once per partition of its
-- source table ({partition} is the partition's toYYYYMM(received_at)),
-- records each partition done in schema_backfills (a run killed half-way
-- resumes), then runs the partitions holding rows stored since the views were
-- created once more (an insert in flight while they were being created). A
-- row written twice, by a view and by the backfill, is harmless: the indexes
-- hold distinct rows. Each SELECT is its view's, word for word.

INSERT INTO {db}.parent_changes (kind, at, session_id, reference_number)
SELECT CAST(tupleElement(c, 1) AS Enum8('payment' = 1, 'operation' = 2, 'authorized' = 3, 'refund_queued' = 4)) AS kind,
    tupleElement(c, 2) AS at, session_id, reference_number
FROM {db}.payment_events
ARRAY JOIN arrayFilter(x -> tupleElement(x, 1) != '', [
    ('payment', stored_at),
    (if(state = 'authorized', 'authorized', ''), timestamp_utc)]) AS c
WHERE toYYYYMM(received_at) = {partition};

INSERT INTO {db}.parent_changes (kind, at, session_id, reference_number)
SELECT CAST(tupleElement(c, 1) AS Enum8('payment' = 1, 'operation' = 2, 'authorized' = 3, 'refund_queued' = 4)) AS kind,
    tupleElement(c, 2) AS at, session_id, reference_number
FROM {db}.operation_events
ARRAY JOIN arrayFilter(x -> tupleElement(x, 1) != '', [
    ('operation', stored_at),
    (if(txn_state IN ('refund_queued', 'refund-queued'), 'refund_queued', ''), timestamp_utc)]) AS c
WHERE toYYYYMM(received_at) = {partition};

INSERT INTO {db}.parent_keys (key_kind, key, session_id)
SELECT CAST(tupleElement(k, 1) AS Enum8('payment_reference' = 1, 'operation_reference' = 2, 'order_no' = 3)) AS key_kind,
    tupleElement(k, 2) AS key, session_id
FROM {db}.payment_events
ARRAY JOIN arrayFilter(x -> tupleElement(x, 2) != '', [
    ('payment_reference', reference_number),
    ('order_no', order_no)]) AS k
WHERE toYYYYMM(received_at) = {partition};

INSERT INTO {db}.parent_keys (key_kind, key, session_id)
SELECT CAST('operation_reference' AS Enum8('payment_reference' = 1, 'operation_reference' = 2, 'order_no' = 3)) AS key_kind,
    reference_number AS key, session_id
FROM {db}.operation_events
WHERE reference_number != '' AND toYYYYMM(received_at) = {partition};

INSERT INTO {db}.parent_months (session_id, month)
SELECT session_id, toYYYYMM(received_at) AS month
FROM {db}.payment_events
WHERE toYYYYMM(received_at) = {partition};

INSERT INTO {db}.parent_months (session_id, month)
SELECT session_id, toYYYYMM(received_at) AS month
FROM {db}.operation_events
WHERE toYYYYMM(received_at) = {partition};
