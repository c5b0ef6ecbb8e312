-- ottu-recon schema 1: the webhooks.
--
-- Amounts are Decimal(38, 8): exact, never floats. Timestamps are UTC.
-- The event tables are append-only; the consumer never inserts a delivery id
-- twice (it checks webhooks_raw, which it writes last, as the commit marker of
-- a batch), and ReplacingMergeTree drops any duplicate a crash could still
-- leave. The views below read them without FINAL.

-- Every accepted delivery, its raw body kept for audit.
CREATE TABLE IF NOT EXISTS webhooks_raw (
    delivery_id String,
    kind Enum8('payment' = 1, 'operation' = 2),
    stream_seq UInt64,
    received_at DateTime,
    stored_at DateTime,
    signature_scheme String,
    key_index UInt8,
    body String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY delivery_id;

-- One row per payment webhook delivery, decoded.
-- is_terminal and state_rank order deliveries of one parent: see the view.
CREATE TABLE IF NOT EXISTS payment_events (
    delivery_id String,
    stream_seq UInt64,
    received_at DateTime,
    session_id String,
    order_no String,
    reference_number String,
    state String,
    result String,
    amount Nullable(Decimal(38, 8)),
    currency_code String,
    gateway_account String,
    gateway_name String,
    payment_type String,
    is_sandbox UInt8,
    paid_amount Nullable(Decimal(38, 8)),
    settled_amount Nullable(Decimal(38, 8)),
    refunded_amount Nullable(Decimal(38, 8)),
    voided_amount Nullable(Decimal(38, 8)),
    remaining_amount Nullable(Decimal(38, 8)),
    timestamp_utc DateTime,
    is_terminal UInt8,
    state_rank UInt8,
    child_session_ids Array(String),
    child_states Array(String),
    child_amounts Array(String),
    child_currency_codes Array(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (session_id, delivery_id);

-- One row per operation webhook delivery, decoded.
CREATE TABLE IF NOT EXISTS operation_events (
    delivery_id String,
    stream_seq UInt64,
    received_at DateTime,
    reference_number String,
    session_id String,
    order_no String,
    child_session_id String,
    operation String,
    source String,
    result String,
    success UInt8,
    pg_code String,
    amount Nullable(Decimal(38, 8)),
    txn_amount Nullable(Decimal(38, 8)),
    txn_currency_code String,
    txn_state String,
    is_sandbox UInt8,
    timestamp_utc DateTime,
    is_terminal UInt8,
    state_rank UInt8
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (session_id, reference_number, delivery_id);

-- Deliveries ingest refused (bad signature, not a webhook, too large), and
-- messages the consumer could not decode, with the reason.
CREATE TABLE IF NOT EXISTS rejected_webhooks (
    delivery_id String,
    received_at DateTime,
    stored_at DateTime,
    stream_seq UInt64,
    reason String,
    body String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY delivery_id;

-- Orders the merchant expects to be paid; filled by the user (optional).
-- Insert a new row to change an order; the latest updated_at wins.
CREATE TABLE IF NOT EXISTS merchant_orders (
    order_no String,
    amount Decimal(38, 8),
    currency_code String,
    updated_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY order_no;

-- payments: one row per parent payment (session_id) at its latest known state.
-- Latest means: a terminal state beats a non-terminal one whatever the times
-- (docs/ottu-webhooks.md §4.1: nothing goes back from a terminal state to created,
-- pending or attempted), then the latest timestamp_utc (so failed -> paid, a
-- documented late transition, moves forward), then the state rank (same second:
-- paid > authorized > cod > failed ...), then the later arrival. A webhook
-- arriving late therefore never moves a state backwards.
CREATE VIEW IF NOT EXISTS {db}.payments AS
SELECT
    session_id, order_no, reference_number, state, result, amount, currency_code,
    gateway_account, gateway_name, is_sandbox, timestamp_utc, payment_type,
    paid_amount, settled_amount, refunded_amount, voided_amount, remaining_amount,
    received_at, delivery_id
FROM {db}.payment_events
ORDER BY session_id, is_terminal DESC, timestamp_utc DESC, state_rank DESC, received_at DESC, stream_seq DESC
LIMIT 1 BY session_id;

-- operations: one row per operation (its reference_number) at its latest known
-- state, ordered the same way (refund_queued is the only non-terminal txn state).
CREATE VIEW IF NOT EXISTS {db}.operations AS
SELECT
    reference_number, session_id, child_session_id, operation, source, amount,
    txn_amount, txn_currency_code, txn_state, result, success, pg_code, order_no,
    is_sandbox, timestamp_utc, received_at, delivery_id
FROM {db}.operation_events
ORDER BY reference_number, is_terminal DESC, timestamp_utc DESC, state_rank DESC, received_at DESC, stream_seq DESC
LIMIT 1 BY reference_number;
