-- ottu-recon schema 9: what a pass keeps of neighbours that misbehave
-- (docs/dependability.md).

-- A finding the alert receiver refused on its own is parked, not sent at
-- every pass: how many times it was refused, and when it is sent again.
ALTER TABLE findings_log ADD COLUMN alert_refusals UInt16;
ALTER TABLE findings_log ADD COLUMN alert_retry_at Nullable(DateTime('UTC'));

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
    tupleElement(l, 10) AS confirmation,
    tupleElement(l, 11) AS alert_refusals,
    tupleElement(l, 12) AS alert_retry_at
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
            confirmation,
            alert_refusals,
            alert_retry_at), version) AS l
    FROM {db}.findings_log
    GROUP BY session_id, code
) AS latest_findings;

-- What each pass did with its neighbours: findings parked, questions to
-- Ottu answered and not, and why it stopped asking.
ALTER TABLE recon_runs ADD COLUMN alerts_parked UInt64;
ALTER TABLE recon_runs ADD COLUMN inquiries UInt64;
ALTER TABLE recon_runs ADD COLUMN inquiries_unanswered UInt64;
ALTER TABLE recon_runs ADD COLUMN inquiry_error String;

-- Only a verdict is a verdict: 'found' (a verified answer about the payment
-- asked, read whole), 'not_found' (Ottu's documented "no such payment"), or
-- '' with the reason in error (no answer, a page that is not Ottu's, a
-- signed answer about another payment or one that cannot be read). Rows
-- written before this column get their verdict from status and found.
ALTER TABLE ottu_inquiries ADD COLUMN verdict String DEFAULT multiIf(status = 200 AND found = 1, 'found', status = 404, 'not_found', '');

-- The values a confirmation compares, as Ottu's record had them.
ALTER TABLE ottu_inquiries ADD COLUMN amount String;
ALTER TABLE ottu_inquiries ADD COLUMN currency_code String;
ALTER TABLE ottu_inquiries ADD COLUMN is_sandbox UInt8;
ALTER TABLE ottu_inquiries ADD COLUMN child_currencies Array(String);

-- An answer that is no verdict is kept as it came, for audit.
ALTER TABLE ottu_inquiries ADD COLUMN body String;
