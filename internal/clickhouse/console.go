package clickhouse

import (
	"context"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// What the console (internal/console) reads and writes. Every query is
// bounded by the DB's QueryTimeout, reads a parent by the tables' sorting
// key (session_id), or every finding once (FindingStates, which the console
// keeps in memory until findings change), and takes its values as
// parameters: nothing a person types reaches the SQL text.

// decisionsQuery reads what people decided by finding (ledger.Decision);
// where, if any, narrows it with " AND …".
var decisionsQuery = strings.NewReplacer("{ack}", sqlString(casefile.ActionAcknowledge), "{resolve}", sqlString(casefile.ActionResolve),
	"{mute}", sqlString(casefile.ActionMute)).Replace(`SELECT session_id, code,
	argMaxIf(actor, at, action = {ack}), toUInt32(argMaxIf(at, at, action = {ack})), argMaxIf(evidence, at, action = {ack}),
	argMaxIf(actor, at, action = {resolve}), toUInt32(argMaxIf(at, at, action = {resolve})), argMaxIf(evidence, at, action = {resolve}),
	toUInt32(assumeNotNull(argMaxIf(until, at, action = {mute}))), toUInt32(argMaxIf(at, at, action = {mute}))
FROM finding_actions WHERE rule_id = ''`)

// decisions reads what people decided, by finding, and the mute rules;
// and (" AND …") narrows the findings read.
func (db *DB) decisions(ctx context.Context, and string, args ...any) (ledger.Decisions, error) {
	out := ledger.Decisions{ByFinding: map[ledger.Key]ledger.Decision{}}
	err := db.each(ctx, "finding_actions", decisionsQuery+and+" GROUP BY session_id, code", args, func(rows driver.Rows) error {
		var k ledger.Key
		var code string
		var d ledger.Decision
		var ackAt, resolveAt, muted, mutedAt uint32
		if err := rows.Scan(&k.SessionID, &code, &d.AckBy, &ackAt, &d.AckEvidence, &d.ResolveBy, &resolveAt, &d.ResolveEvidence,
			&muted, &mutedAt); err != nil {
			return err
		}
		k.Code = ledger.Code(code)
		d.AckAt, d.ResolveAt = unixTime(ackAt), unixTime(resolveAt)
		if muted > 0 {
			d.MutedUntil, d.MutedAt = unixTime(muted), unixTime(mutedAt)
		}
		out.ByFinding[k] = d
		return nil
	})
	if err != nil {
		return out, err
	}
	out.Rules, err = db.muteRules(ctx)
	return out, err
}

// latestQuery reads the latest version of each finding as a pass wrote it,
// with or without its detail; where narrows it (before the grouping: it
// must name session_id and code only).
func latestQuery(detail bool, where string) string {
	columns := []string{"severity", "status", "first_seen", "last_seen", "resolved_at", "evidence", "amount",
		"currency_code", "gateway", "confirmation", "version"}
	d := "''" // the detail is long: read only when asked
	if detail {
		columns, d = append(columns, "detail"), "detail"
	}
	return `SELECT session_id, code, toString(severity), toString(status), first_seen, last_seen, resolved_at, ` + d + `,
	evidence, amount, currency_code, gateway, confirmation, version
FROM (` + latestFindings(columns, where) + ")"
}

func (db *DB) latest(ctx context.Context, detail bool, where string, args ...any) ([]casefile.Finding, error) {
	rows, err := db.conn.Query(ctx, latestQuery(detail, where), args...)
	if err != nil {
		return nil, fmt.Errorf("query findings: %w", err)
	}
	defer rows.Close()
	var out []casefile.Finding
	for rows.Next() {
		var f casefile.Finding
		if err := rows.Scan(&f.SessionID, &f.Code, &f.Severity, &f.Status, &f.FirstSeen, &f.LastSeen, &f.ResolvedAt, &f.Detail, &f.Evidence,
			&f.Amount, &f.Currency, &f.Gateway, &f.Confirmation, &f.Version); err != nil {
			return nil, fmt.Errorf("scan finding: %w", err)
		}
		f.FirstSeen, f.LastSeen = f.FirstSeen.UTC(), f.LastSeen.UTC()
		if f.ResolvedAt != nil {
			*f.ResolvedAt = f.ResolvedAt.UTC()
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// FindingStates returns the latest version, as passes wrote it and without
// its detail (FindingDetails), among versions from to to (to 0: every
// version from on) of each finding written in them, and how many distinct
// versions it read. The console keeps the findings in memory, reads the
// versions a pass tells it it wrote (a count short of the range: some are
// not visible on this server yet), and applies people's decisions itself.
func (db *DB) FindingStates(ctx context.Context, from, to uint64) ([]casefile.Finding, uint64, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	where, args := " WHERE version >= ?", []any{from}
	if to > 0 {
		where, args = where+" AND version <= ?", append(args, to)
	}
	var n uint64
	if err := db.conn.QueryRow(ctx, "SELECT uniqExact(version) FROM findings_log"+where, args...).Scan(&n); err != nil {
		return nil, 0, fmt.Errorf("count the findings' versions: %w", err)
	}
	rows, err := db.latest(ctx, false, where, args...)
	return rows, n, err
}

// Decisions returns what people decided: by finding, and the mute rules.
func (db *DB) Decisions(ctx context.Context) (ledger.Decisions, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	return db.decisions(ctx, "")
}

// FindingDetails returns the latest detail of each of keys.
func (db *DB) FindingDetails(ctx context.Context, keys []ledger.Key) (map[ledger.Key]string, error) {
	out := map[ledger.Key]string{}
	if len(keys) == 0 {
		return out, nil
	}
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	sessions := make([]string, 0, len(keys))
	want := map[ledger.Key]bool{}
	for _, k := range keys {
		if !want[k] {
			sessions = append(sessions, k.SessionID)
		}
		want[k] = true
	}
	ctx, in, err := (&Store{DB: db}).inList(ctx, "session_id", sessions)
	if err != nil {
		return nil, err
	}
	err = db.each(ctx, "details", "SELECT session_id, code, argMax(detail, version) FROM findings_log WHERE "+in+" GROUP BY session_id, code", nil,
		func(rows driver.Rows) error {
			var k ledger.Key
			var code, detail string
			if err := rows.Scan(&k.SessionID, &code, &detail); err != nil {
				return err
			}
			if k.Code = ledger.Code(code); want[k] {
				out[k] = detail
			}
			return nil
		})
	return out, err
}
