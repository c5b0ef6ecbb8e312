-- ottu-recon schema 6: what Ottu's own record says (Payment Status Query).

-- Every question ottu-recon asked Ottu about a parent, and Ottu's answer as
-- far as reconciliation needs it: whether Ottu knows the parent, and the
-- children its record lists (texts exactly as Ottu sent them). The answer
-- itself is also stored as a delivery (webhooks_raw.source = 'inquiry').
-- Ottu's throttle is kept from these rows: at most 3 questions per parent a
-- day, 30 minutes apart.
CREATE TABLE IF NOT EXISTS ottu_inquiries (
    session_id String,
    asked_at DateTime('UTC'),
    status UInt16,
    found UInt8,
    delivery_id String,
    state String,
    child_session_ids Array(String),
    child_states Array(String),
    child_amounts Array(String),
    error String,
    run_id String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(asked_at)
ORDER BY (session_id, asked_at);

-- Where an accepted delivery came from: Ottu's webhook, or ottu-recon's
-- question to Ottu's Payment Status Query.
ALTER TABLE webhooks_raw ADD COLUMN source String DEFAULT 'webhook';

-- Whether Ottu's own record confirms a finding: '', 'confirmed' or
-- 'contradicted', with when.
ALTER TABLE findings_log ADD COLUMN confirmation String;

DROP TABLE IF EXISTS {db}.findings;

CREATE VIEW IF NOT EXISTS {db}.findings AS
SELECT session_id, code, severity, status, first_seen, last_seen, resolved_at, alerted_at, detail, run_id, published_at, confirmation
FROM {db}.findings_log
ORDER BY session_id, code, version DESC
LIMIT 1 BY session_id, code;
