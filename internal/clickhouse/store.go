package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// Store implements ledger.Store on ClickHouse. A pass reads parents a chunk
// of neighbouring session_ids at a time (parents.go), so no table is ever
// loaded into memory.
type Store struct {
	DB *DB
	// ChunkRows is about how many deliveries a pass reads at a time
	// (DefaultChunkRows when 0).
	ChunkRows int

	chunkSessions int         // parents a chunk of an incremental pass holds at most (tests)
	changeIndex   atomic.Bool // the change indexes are complete (ChangeIndexVersion)
	lists         atomic.Uint64

	lastVersion uint64

	// Saved, when set, is told the versions each SaveFindings wrote, from
	// to to, once they are stored: reconcile tells every replica's console.
	Saved func(from, to uint64)
}

var _ ledger.Store = (*Store)(nil)

// version returns the next finding-row version: one more than the highest
// version stored when this Store first wrote, then one more each time. No
// clock is involved, so a replica whose clock is behind cannot make an older
// version win; the pass lease keeps two passes from writing at once.
func (s *Store) version(ctx context.Context) (uint64, error) {
	if s.lastVersion == 0 {
		var v uint64
		if err := s.DB.conn.QueryRow(ctx, "SELECT max(version) FROM findings_log").Scan(&v); err != nil {
			return 0, fmt.Errorf("read the last finding version: %w", err)
		}
		s.lastVersion = v
	}
	s.lastVersion++
	return s.lastVersion, nil
}

// LastPass describes the last pass that succeeded.
func (s *Store) LastPass(ctx context.Context) (ledger.LastPass, bool, error) {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	var (
		lp     ledger.LastPass
		n      uint64
		failed uint64
		full   uint32
	)
	err := s.DB.conn.QueryRow(ctx, `SELECT count(), argMax(started_at, (started_at, finished_at)),
		argMax(watermark, (started_at, finished_at)), toUInt32(maxIf(started_at, full_pass = 1)),
		argMax(parents_failed, (started_at, finished_at)), argMax(failed_sessions, (started_at, finished_at))
		FROM recon_runs WHERE error = ''`).Scan(&n, &lp.Started, &lp.Watermark, &full, &failed, &lp.FailedSessions)
	if err != nil {
		return lp, false, fmt.Errorf("query recon_runs: %w", err)
	}
	lp.Started, lp.Watermark, lp.ParentsFailed = lp.Started.UTC(), lp.Watermark.UTC(), int(failed)
	if full > 0 {
		lp.LastFull = time.Unix(int64(full), 0).UTC()
	}
	return lp, n > 0, nil
}

// Watermark is the ClickHouse server's clock: the writer stamps stored_at
// with it, so a pass and the writers compare times on one clock. On a
// cluster (CLICKHOUSE_CLUSTER) it is moved back by how far this replica lags
// behind the others (system.replicas.absolute_delay): rows another replica
// stored in that time may not be here yet, and the next pass must still look
// for them.
func (s *Store) Watermark(ctx context.Context) (time.Time, error) {
	now, err := s.DB.Now(ctx)
	if err != nil || s.DB.Cluster == "" {
		return now, err
	}
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	var delay uint64
	if err := s.DB.conn.QueryRow(ctx, "SELECT toUInt64(max(absolute_delay)) FROM system.replicas WHERE database = currentDatabase()").Scan(&delay); err != nil {
		return time.Time{}, fmt.Errorf("read the replication delay: %w", err)
	}
	return now.Add(-time.Duration(delay) * time.Second), nil
}

// passFindings is the latest version of each finding as passes wrote it:
// the findings view without what people decided (a finding a person
// resolved is still open here, and the pass goes on refreshing it).
var passFindings = latestFindings([]string{"severity", "status", "first_seen", "last_seen", "resolved_at", "alerted_at",
	"published_at", "detail", "run_id", "confirmation", "alert_refusals", "alert_retry_at", "evidence", "amount",
	"currency_code", "gateway"}, "")

// latestFindings is the one reading of "the latest version of each finding
// as a pass wrote it" (findings_log, by version): a query of session_id,
// code and columns, each under its own name. where narrows it before the
// grouping, so it must name session_id and code only.
func latestFindings(columns []string, where string) string {
	outer := make([]string, len(columns))
	for i, c := range columns {
		outer[i] = fmt.Sprintf("tupleElement(l, %d) AS %s", i+1, c)
	}
	return "SELECT session_id, code, " + strings.Join(outer, ", ") + `
FROM (
	SELECT session_id, code, argMax(tuple(` + strings.Join(columns, ", ") + `), version) AS l
	FROM findings_log` + where + `
	GROUP BY session_id, code
)`
}

const findingColumns = "session_id, code, toString(severity), toString(status), first_seen, last_seen, resolved_at, alerted_at, published_at, detail, run_id, confirmation, alert_refusals, alert_retry_at, evidence, amount, currency_code, gateway"

// OpenFindings returns every finding a pass left open.
func (s *Store) OpenFindings(ctx context.Context) ([]ledger.Record, error) {
	return s.findings(ctx, ledger.StatusOpen)
}

// findings returns the findings a pass left with status.
func (s *Store) findings(ctx context.Context, status string) ([]ledger.Record, error) {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	return collect(ctx, s.DB, "findings", "SELECT "+findingColumns+" FROM ("+passFindings+") WHERE status = ? ORDER BY session_id, code", []any{status}, func(rows driver.Rows) (ledger.Record, error) {
		var r ledger.Record
		var code, severity string
		var resolved, alerted, published, retry *time.Time
		var refusals uint16
		var stake decimal.Decimal
		if err := rows.Scan(&r.SessionID, &code, &severity, &r.Status, &r.FirstSeen, &r.LastSeen, &resolved, &alerted, &published,
			&r.Detail, &r.RunID, &r.Confirmation, &refusals, &retry, &r.Evidence, &stake, &r.Stake.Currency, &r.Stake.Gateway); err != nil {
			return r, err
		}
		if r.Stake.Currency != "" || !stake.IsZero() {
			r.Stake.Amount = events.Amount{Decimal: stake, Valid: true}
		}
		r.Code, r.Severity = ledger.Code(code), ledger.Severity(severity)
		r.FirstSeen, r.LastSeen = r.FirstSeen.UTC(), r.LastSeen.UTC()
		if resolved != nil {
			r.ResolvedAt = resolved.UTC()
		}
		if alerted != nil {
			r.AlertedAt = alerted.UTC()
		}
		if published != nil {
			r.PublishedAt = published.UTC()
		}
		if retry != nil {
			r.AlertRetryAt = retry.UTC()
		}
		r.AlertRefusals = int(refusals)
		return r, nil
	})
}

// Decisions returns what people decided in the console: by finding (read
// as the console reads it), and the mute rules.
func (s *Store) Decisions(ctx context.Context) (ledger.Decisions, error) { return s.DB.Decisions(ctx) }

// SaveFindings writes new versions of findings.
func (s *Store) SaveFindings(ctx context.Context, recs []ledger.Record) error {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	versions := make([]uint64, len(recs))
	for i := range recs {
		v, err := s.version(ctx)
		if err != nil {
			return err
		}
		versions[i] = v
	}
	w := Writer{DB: s.DB}
	err := w.insert(ctx, "findings_log", `INSERT INTO findings_log (session_id, code, severity, status, first_seen,
		last_seen, resolved_at, alerted_at, published_at, detail, run_id, confirmation, alert_refusals, alert_retry_at, version,
		evidence, amount, currency_code, gateway)`,
		len(recs), func(i int) []any {
			r := recs[i]
			stake := decimal.Zero
			if r.Stake.Amount.Valid { // read from the store: it fits Decimal(38, 8)
				stake = r.Stake.Amount.Decimal
			}
			return []any{r.SessionID, string(r.Code), string(r.Severity), r.Status, r.FirstSeen, r.LastSeen,
				nullTime(r.ResolvedAt), nullTime(r.AlertedAt), nullTime(r.PublishedAt), r.Detail, r.RunID, r.Confirmation,
				uint16(min(r.AlertRefusals, 65535)), nullTime(r.AlertRetryAt), versions[i],
				r.Evidence, stake, r.Stake.Currency, r.Stake.Gateway}
		})
	if err == nil && s.Saved != nil && len(recs) > 0 {
		s.Saved(versions[0], versions[len(versions)-1])
	}
	return err
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// SaveRun records a pass.
func (s *Store) SaveRun(ctx context.Context, r ledger.Run) error {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	w := Writer{DB: s.DB}
	failed := r.FailedSessions
	if failed == nil {
		failed = []string{}
	}
	return w.insert(ctx, "recon_runs", `INSERT INTO recon_runs (run_id, started_at, finished_at, watermark, full_pass,
		parents_evaluated, parents_failed, failed_sessions, findings_raised, findings_resolved, findings_open, alerted,
		alerts_pending, alert_error, error, alerts_parked, inquiries, inquiries_unanswered, inquiry_error, swept)`, 1, func(int) []any {
		return []any{r.ID, r.Started, r.Finished, r.Watermark, b2u(r.Full), uint64(r.ParentsEvaluated), uint64(r.ParentsFailed),
			failed, uint64(r.Raised), uint64(r.Resolved), uint64(r.Open), uint64(r.Alerted), uint64(r.AlertsPending),
			r.AlertError, r.Error, uint64(r.AlertsParked), uint64(r.Inquiries), uint64(r.InquiryErrors), r.InquiryError,
			uint64(r.Swept)}
	})
}

// latest is ledger.Rank in SQL: the order the views, the report and the
// queries below pick the latest delivery of a payment or an operation by. A
// delivery whose timestamp_utc is later than its arrival plus
// ledger.ClockSkew ranks below every other, so a re-posted body with a forged
// future time never becomes the latest. TestLatest pins it (and the views'
// copies) to ledger.Rank.
const latest = "(toUInt32(timestamp_utc) <= toUInt32(received_at) + 300, is_terminal, timestamp_utc, state_rank, received_at, stream_seq)"

// unreadableKey is what an unreadable delivery is filed under (the key of
// ledger.Fold.AddUnreadable): its parent's session_id when that could be
// read, else its own delivery id. TestSQLRules checks it.
const unreadableKey = "if(session_id != '', session_id, delivery_id)"

// severityRank is ledger.SeverityRank in SQL, generated from it.
var severityRank = func() string {
	var b strings.Builder
	b.WriteString("multiIf(")
	for _, s := range ledger.Severities {
		fmt.Fprintf(&b, "severity = %s, %d, ", sqlString(string(s)), ledger.SeverityRank(s))
	}
	b.WriteString("0)")
	return b.String()
}()

// isOpen keeps the open findings (ledger.StatusOpen).
var isOpen = "status = " + sqlString(ledger.StatusOpen)

// sqlString quotes s as a ClickHouse string literal.
func sqlString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// sqlStrings is a list of string literals, for IN.
func sqlStrings(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = sqlString(x)
	}
	return strings.Join(q, ", ")
}

// anchorSQL maps each anchor of the ledger's time-based rules to the rows
// that carry it: a table, and a condition with two placeholders (the window).
// The states come from package events.
// index is parent_changes' kind for the same anchor (schema 10; its views
// write the rows under the same condition: TestAnchorIndex).
var anchorSQL = map[ledger.Anchor]struct{ table, cond, index string }{
	ledger.AnchorPaymentReceived:   {"payment_events", "received_at >= ? AND received_at <= ?", ""},
	ledger.AnchorOperationReceived: {"operation_events", "received_at >= ? AND received_at <= ?", ""},
	ledger.AnchorAuthorized: {"payment_events",
		"state = " + sqlString(events.StateAuthorized) + " AND timestamp_utc >= ? AND timestamp_utc <= ?", "authorized"},
	ledger.AnchorRefundQueued: {"operation_events",
		"txn_state IN (" + sqlStrings(events.RefundQueuedSpellings) + ") AND timestamp_utc >= ? AND timestamp_utc <= ?", "refund_queued"},
}
