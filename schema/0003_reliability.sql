-- ottu-recon schema 3: nothing is lost, nothing slips past a pass.
--
-- ALTER TABLE ... ADD COLUMN has no IF NOT EXISTS on ClickHouse 18.16: the
-- migrator skips such a statement when the column exists already, so the file
-- stays safe to apply again.

-- Authentic deliveries (their signature verified) that cannot be read as Ottu
-- documents them, and messages the store could not insert (poison), each kept
-- whole with the reason. Every row is raised as an UNREADABLE_WEBHOOK finding,
-- filed under session_id when it could be read, else under delivery_id.
CREATE TABLE IF NOT EXISTS unreadable_webhooks (
    delivery_id String,
    stream_seq UInt64,
    received_at DateTime,
    stored_at DateTime,
    kind String,
    session_id String,
    field String,
    reason String,
    signature_scheme String,
    key_index UInt8,
    body String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY delivery_id;

-- When the store wrote each delivery (ClickHouse server time): a pass
-- evaluates every parent with a delivery stored since the last pass, however
-- late it was received. Rows written before this column existed read as their
-- received_at.
ALTER TABLE payment_events ADD COLUMN stored_at DateTime DEFAULT received_at;
ALTER TABLE operation_events ADD COLUMN stored_at DateTime DEFAULT received_at;

-- When an order row was inserted (server time), whatever updated_at the user
-- gave: a pass evaluates the parents of every order inserted since the last
-- pass. OPTIMIZE writes the column into the rows that predate it (once).
ALTER TABLE merchant_orders ADD COLUMN inserted_at DateTime DEFAULT now();
OPTIMIZE TABLE merchant_orders FINAL;

-- Per pass: the store's clock when the pass started (what the next pass
-- looks back to), the parents that could not be evaluated (retried by the
-- next pass), and how many findings still wait for an alert.
ALTER TABLE recon_runs ADD COLUMN watermark DateTime DEFAULT started_at;
ALTER TABLE recon_runs ADD COLUMN parents_failed UInt64;
ALTER TABLE recon_runs ADD COLUMN failed_sessions Array(String);
ALTER TABLE recon_runs ADD COLUMN alerts_pending UInt64;

-- When a finding was announced on recon.findings (acknowledged by JetStream).
ALTER TABLE findings_log ADD COLUMN published_at Nullable(DateTime);

-- DROP TABLE drops a view on every version (18.16 has no DROP VIEW).
DROP TABLE IF EXISTS {db}.findings;

CREATE VIEW IF NOT EXISTS {db}.findings AS
SELECT session_id, code, severity, status, first_seen, last_seen, resolved_at, alerted_at, detail, run_id, published_at
FROM {db}.findings_log
ORDER BY session_id, code, version DESC
LIMIT 1 BY session_id, code;
