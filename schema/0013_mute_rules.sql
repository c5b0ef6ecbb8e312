-- ottu-recon schema 13: mute rules, and the findings view reading them
-- (docs/console.md, "Mute rules").

-- Two more actions, audited with the others: a rule made, a rule ended
-- early. rule_id names the rule (mute_rules.id); it is empty for an action
-- on one finding.
ALTER TABLE finding_actions MODIFY COLUMN action Enum8('acknowledge' = 1, 'resolve' = 2, 'mute' = 3, 'note' = 4, 'mute_rule' = 5, 'end_mute_rule' = 6);
ALTER TABLE finding_actions ADD COLUMN rule_id String;

-- A mute by rule, like an Alertmanager silence: the findings it matches
-- (code, gateway, currency_code; empty matches any), now or later, are not
-- alerted until `until`. Ending a rule early adds a row with ended_by and
-- ended_at (the rule's other columns copied); a rule lasts until the
-- earlier of until and its first ending.
CREATE TABLE IF NOT EXISTS mute_rules (
    id String,
    code String,
    gateway String,
    currency_code String,
    until DateTime('UTC'),
    actor String,
    at DateTime('UTC'),
    note String,
    ended_by String,
    ended_at Nullable(DateTime('UTC'))
) ENGINE = ReplacingMergeTree
ORDER BY (id, ended_by);

DROP TABLE IF EXISTS {db}.findings;

-- findings: the latest version of each finding, with what people decided,
-- read as ledger.Decision reads it (TestDecisionSQL holds the two
-- together). status is 'resolved' when a pass resolved it, or when a person
-- resolved it and its evidence has not changed since (resolved_by names
-- them; it is empty when a pass resolved it). acknowledged_by and
-- acknowledged_at are set while the finding is open and its evidence is what
-- the person acknowledged. muted_until is the latest of the finding's own
-- mute and the ends of the mute rules matching it.
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
    if(mute_end = 0, CAST(NULL AS Nullable(DateTime('UTC'))), toNullable(CAST(mute_end AS DateTime('UTC')))) AS muted_until
FROM (
    SELECT f.*, ack_by, ack_at, ack_evidence, resolve_by, resolve_at, resolve_evidence,
        arrayPushBack((SELECT groupArray(tuple(rule_code, rule_gateway, rule_currency, rule_end)) FROM (
            SELECT any(code) AS rule_code, any(gateway) AS rule_gateway, any(currency_code) AS rule_currency,
                toUInt32(any(until)) AS rule_until,
                minIf(toUInt32(assumeNotNull(ended_at)), ended_by != '') AS rule_ended,
                if(rule_ended > 0 AND rule_ended < rule_until, rule_ended, rule_until) AS rule_end
            FROM {db}.mute_rules
            GROUP BY id)), tuple('', '', '', toUInt32(0))) AS rules,
        greatest(toUInt32(assumeNotNull(own_muted_until)), arrayReduce('max', arrayMap((r, k) -> if(
            (tupleElement(r, 1) = '' OR tupleElement(r, 1) = tupleElement(k, 1))
                AND (tupleElement(r, 2) = '' OR tupleElement(r, 2) = tupleElement(k, 2))
                AND (tupleElement(r, 3) = '' OR tupleElement(r, 3) = tupleElement(k, 3)), tupleElement(r, 4), toUInt32(0)),
            rules, replicate(tuple(code, gateway, currency_code), rules)))) AS mute_end
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
            argMaxIf(until, at, action = 'mute') AS own_muted_until
        FROM {db}.finding_actions
        WHERE rule_id = ''
        GROUP BY session_id, code
    ) AS a USING (session_id, code)
) AS decided;
