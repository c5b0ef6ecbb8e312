-- ottu-recon schema 11: the console, where a person works the findings
-- (docs/console.md).

-- What a finding is about, as the pass saw it: the parent's evidence (a
-- fingerprint of its deliveries and its merchant order; it changes when new
-- evidence arrives, docs/console.md "Evidence"), and the money at stake (the
-- parent's amount and currency, and its gateway), so that the console
-- filters, counts and charts findings without reading the deliveries.
ALTER TABLE findings_log ADD COLUMN evidence String;
ALTER TABLE findings_log ADD COLUMN amount Decimal(38, 8);
ALTER TABLE findings_log ADD COLUMN currency_code String;
ALTER TABLE findings_log ADD COLUMN gateway String;

-- Every action a person took in the console: acknowledge, resolve (with a
-- note), mute (a code for a payment, until a time) and note. Rows are only
-- ever added. evidence is the finding's evidence the person saw when acting:
-- an acknowledgement or a resolution holds while the finding's evidence is
-- still that. action_id makes a retried insert one action (ReplacingMergeTree
-- over the whole key).
CREATE TABLE IF NOT EXISTS finding_actions (
    session_id String,
    code String,
    action Enum8('acknowledge' = 1, 'resolve' = 2, 'mute' = 3, 'note' = 4),
    actor String,
    at DateTime('UTC'),
    note String,
    until Nullable(DateTime('UTC')),
    evidence String,
    action_id String
) ENGINE = ReplacingMergeTree
ORDER BY (session_id, code, at, action_id);

DROP TABLE IF EXISTS {db}.findings;

-- findings: the latest version of each finding, with what people decided.
-- status is 'resolved' when a pass resolved it, or when a person resolved it
-- and its evidence has not changed since (resolved_by names them; it is empty
-- when a pass resolved it). acknowledged_by and acknowledged_at are set while
-- the finding is open and its evidence is what the person acknowledged.
-- muted_until is the latest mute of the code for the payment.
CREATE VIEW IF NOT EXISTS {db}.findings AS
SELECT session_id, code, severity,
    if(resolve_by != '' AND resolve_evidence = evidence, 'resolved', toString(pass_status)) AS status,
    first_seen, last_seen,
    if(resolve_by != '' AND resolve_evidence = evidence AND pass_status = 'open', toNullable(resolve_at), pass_resolved_at) AS resolved_at,
    alerted_at, detail, run_id, published_at, confirmation, alert_refusals, alert_retry_at,
    evidence, amount, currency_code, gateway,
    if(status = 'open' AND ack_by != '' AND ack_evidence = evidence, ack_by, '') AS acknowledged_by,
    if(status = 'open' AND ack_by != '' AND ack_evidence = evidence, toNullable(ack_at), CAST(NULL AS Nullable(DateTime('UTC')))) AS acknowledged_at,
    if(resolve_by != '' AND resolve_evidence = evidence, resolve_by, '') AS resolved_by,
    muted_until
FROM (
    SELECT session_id, code,
        tupleElement(l, 1) AS severity,
        tupleElement(l, 2) AS pass_status,
        tupleElement(l, 3) AS first_seen,
        tupleElement(l, 4) AS last_seen,
        tupleElement(l, 5) AS pass_resolved_at,
        tupleElement(l, 6) AS alerted_at,
        tupleElement(l, 7) AS detail,
        tupleElement(l, 8) AS run_id,
        tupleElement(l, 9) AS published_at,
        tupleElement(l, 10) AS confirmation,
        tupleElement(l, 11) AS alert_refusals,
        tupleElement(l, 12) AS alert_retry_at,
        tupleElement(l, 13) AS evidence,
        tupleElement(l, 14) AS amount,
        tupleElement(l, 15) AS currency_code,
        tupleElement(l, 16) AS gateway
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
                alert_retry_at,
                evidence,
                amount,
                currency_code,
                gateway), version) AS l
        FROM {db}.findings_log
        GROUP BY session_id, code
    ) AS latest_findings
) AS f
ANY LEFT JOIN (
    SELECT session_id, code,
        argMaxIf(actor, at, action = 'acknowledge') AS ack_by,
        argMaxIf(at, at, action = 'acknowledge') AS ack_at,
        argMaxIf(evidence, at, action = 'acknowledge') AS ack_evidence,
        argMaxIf(actor, at, action = 'resolve') AS resolve_by,
        argMaxIf(at, at, action = 'resolve') AS resolve_at,
        argMaxIf(evidence, at, action = 'resolve') AS resolve_evidence,
        argMaxIf(until, at, action = 'mute') AS muted_until
    FROM {db}.finding_actions
    GROUP BY session_id, code
) AS a USING (session_id, code);
