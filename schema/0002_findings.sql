-- ottu-recon schema 2: findings and reconciliation runs.

-- Every version of every finding: a pass writes a row when it raises a finding,
-- sees it again (last_seen), resolves it or alerts it. The latest version wins.
CREATE TABLE IF NOT EXISTS findings_log (
    session_id String,
    code String,
    severity Enum8('info' = 1, 'warning' = 2, 'critical' = 3),
    status Enum8('open' = 1, 'resolved' = 2),
    first_seen DateTime,
    last_seen DateTime,
    resolved_at Nullable(DateTime),
    alerted_at Nullable(DateTime),
    detail String,
    run_id String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (session_id, code);

-- findings: one row per finding (one rule firing for one parent), its latest version.
CREATE VIEW IF NOT EXISTS {db}.findings AS
SELECT session_id, code, severity, status, first_seen, last_seen, resolved_at, alerted_at, detail, run_id
FROM {db}.findings_log
ORDER BY session_id, code, version DESC
LIMIT 1 BY session_id, code;

-- One row per reconciliation pass.
CREATE TABLE IF NOT EXISTS recon_runs (
    run_id String,
    started_at DateTime,
    finished_at DateTime,
    full_pass UInt8,
    parents_evaluated UInt64,
    findings_raised UInt64,
    findings_resolved UInt64,
    findings_open UInt64,
    alerted UInt64,
    alert_error String,
    error String
) ENGINE = MergeTree
ORDER BY started_at;
