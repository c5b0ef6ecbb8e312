-- ottu-recon schema 10: small indexes, so that an incremental pass finds
-- what changed, and where, without reading the history (docs/performance.md, "Cost
-- follows change").
--
-- The event tables are ordered by session_id, which is what reading a parent
-- needs; but "what was stored since the last pass", "which payments were
-- authorized in this window" and "which parents carry this reference" are
-- questions about other columns, and answering them from the event tables
-- scanned a column of every delivery ever stored, every five minutes.
-- ClickHouse keeps the indexes current on insert (materialized views of the
-- event tables); `reconcile migrate` fills them from the rows stored before
-- (0010_change_index.backfill.sql). Rows are only ever added, and a row added
-- twice means the same thing as once (ReplacingMergeTree over every column):
-- readers ask for distinct values.

-- When parents changed: one row per delivery at its stored_at (kind payment or
-- operation, with its reference_number), and one per delivery that starts a
-- clock of a time-based rule, at the time the clock starts (authorized: a
-- payment delivery in state authorized, at its timestamp_utc; refund_queued:
-- an operation delivery in txn.state refund_queued, in either spelling, at its
-- timestamp_utc). A pass reads a range of (kind, at).
CREATE TABLE IF NOT EXISTS parent_changes (
    kind Enum8('payment' = 1, 'operation' = 2, 'authorized' = 3, 'refund_queued' = 4),
    at DateTime,
    session_id String,
    reference_number String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (kind, at, session_id, reference_number);

-- Which parents carry a key: the signed reference_number of a payment or an
-- operation (a reference under two parents is REPLAYED_WEBHOOK evidence), and
-- the order_no of a payment (a merchant_orders row changes its parents).
CREATE TABLE IF NOT EXISTS parent_keys (
    key_kind Enum8('payment_reference' = 1, 'operation_reference' = 2, 'order_no' = 3),
    key String,
    session_id String
) ENGINE = ReplacingMergeTree
ORDER BY (key_kind, key, session_id);

-- Which months of received_at (the event tables' partitions) hold each
-- parent's deliveries: a pass reads a changed parent in those months only,
-- so an old month is read only when a parent that has deliveries in it
-- changed (deliveries cluster around a payment's creation).
CREATE TABLE IF NOT EXISTS parent_months (
    session_id String,
    month UInt32
) ENGINE = ReplacingMergeTree
ORDER BY (session_id, month);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.parent_changes_payments TO {db}.parent_changes AS
SELECT CAST(tupleElement(c, 1) AS Enum8('payment' = 1, 'operation' = 2, 'authorized' = 3, 'refund_queued' = 4)) AS kind,
    tupleElement(c, 2) AS at, session_id, reference_number
FROM {db}.payment_events
ARRAY JOIN arrayFilter(x -> tupleElement(x, 1) != '', [
    ('payment', stored_at),
    (if(state = 'authorized', 'authorized', ''), timestamp_utc)]) AS c;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.parent_changes_operations TO {db}.parent_changes AS
SELECT CAST(tupleElement(c, 1) AS Enum8('payment' = 1, 'operation' = 2, 'authorized' = 3, 'refund_queued' = 4)) AS kind,
    tupleElement(c, 2) AS at, session_id, reference_number
FROM {db}.operation_events
ARRAY JOIN arrayFilter(x -> tupleElement(x, 1) != '', [
    ('operation', stored_at),
    (if(txn_state IN ('refund_queued', 'refund-queued'), 'refund_queued', ''), timestamp_utc)]) AS c;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.parent_keys_payments TO {db}.parent_keys AS
SELECT CAST(tupleElement(k, 1) AS Enum8('payment_reference' = 1, 'operation_reference' = 2, 'order_no' = 3)) AS key_kind,
    tupleElement(k, 2) AS key, session_id
FROM {db}.payment_events
ARRAY JOIN arrayFilter(x -> tupleElement(x, 2) != '', [
    ('payment_reference', reference_number),
    ('order_no', order_no)]) AS k;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.parent_keys_operations TO {db}.parent_keys AS
SELECT CAST('operation_reference' AS Enum8('payment_reference' = 1, 'operation_reference' = 2, 'order_no' = 3)) AS key_kind,
    reference_number AS key, session_id
FROM {db}.operation_events
WHERE reference_number != '';

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.parent_months_payments TO {db}.parent_months AS
SELECT session_id, toYYYYMM(received_at) AS month
FROM {db}.payment_events;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.parent_months_operations TO {db}.parent_months AS
SELECT session_id, toYYYYMM(received_at) AS month
FROM {db}.operation_events;
