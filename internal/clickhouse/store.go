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

// Standings returns what people decided in the console (finding_actions,
// read as the console reads it: DB.Decisions), by finding: the evidence of
// the latest acknowledgement and of the latest resolution, and the latest
// mute.
func (s *Store) Standings(ctx context.Context) (map[ledger.Key]ledger.Standing, error) {
	decisions, err := s.DB.Decisions(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[ledger.Key]ledger.Standing, len(decisions))
	for k, d := range decisions {
		st := ledger.Standing{AcknowledgedEvidence: d.AckEvidence, ResolvedEvidence: d.ResolveEvidence}
		if d.MutedUntil != nil {
			st.MutedUntil = *d.MutedUntil
		}
		out[ledger.Key{SessionID: k.SessionID, Code: ledger.Code(k.Code)}] = st
	}
	return out, nil
}

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
	return w.insert(ctx, "findings_log", `INSERT INTO findings_log (session_id, code, severity, status, first_seen,
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
		alerts_pending, alert_error, error, alerts_parked, inquiries, inquiries_unanswered, inquiry_error)`, 1, func(int) []any {
		return []any{r.ID, r.Started, r.Finished, r.Watermark, b2u(r.Full), uint64(r.ParentsEvaluated), uint64(r.ParentsFailed),
			failed, uint64(r.Raised), uint64(r.Resolved), uint64(r.Open), uint64(r.Alerted), uint64(r.AlertsPending),
			r.AlertError, r.Error, uint64(r.AlertsParked), uint64(r.Inquiries), uint64(r.InquiryErrors), r.InquiryError}
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

// inquiryCandidatesQuery picks the parents to ask Ottu about: an open
// finding of the given codes (most severe first) or a payment still pending
// since before the given time; never a parent the throttle does not allow
// yet: created (first seen) less than NotBefore ago (by the earliest
// timestamp_utc or arrival of its deliveries: Ottu created it no later),
// asked less than Apart ago, or asked PerDay times in a day (Ottu's throttle, docs/ottu-webhooks.md §7.1). A parent first seen
// less than 10 minutes ago has only deliveries received since: only those
// parents are read to tell. A pending state is never terminal: only parents
// with no terminal delivery (a cheap aggregation) are ranked by the latest.
var inquiryCandidatesQuery = strings.NewReplacer("{severity_rank}", severityRank,
	"{pending_states}", sqlStrings(ledger.PendingStates)).Replace(`
SELECT session_id
FROM (
	SELECT session_id, max(rank) AS rank
	FROM (
		SELECT session_id, {severity_rank} AS rank
		FROM findings WHERE ` + isOpen + ` AND code IN (SELECT arrayJoin(?))
		UNION ALL
		SELECT session_id, 1 AS rank
		FROM (SELECT session_id, argMax(state, ` + latest + `) AS st
			FROM payment_events
			WHERE session_id IN (SELECT session_id FROM payment_events GROUP BY session_id
				HAVING max(is_terminal) = 0 AND max(received_at) <= ?)
			GROUP BY session_id) AS latest_payments
		WHERE st IN ({pending_states})
	) AS wanted
	GROUP BY session_id
) AS c
WHERE session_id NOT IN (
	SELECT session_id FROM ottu_inquiries GROUP BY session_id
	HAVING countIf(asked_at >= ?) >= ? OR max(asked_at) > ?)
AND session_id NOT IN (
	SELECT session_id FROM (
		SELECT session_id, least(toUInt32(timestamp_utc), toUInt32(received_at)) AS first FROM payment_events
		WHERE session_id IN (SELECT session_id FROM payment_events WHERE received_at > ? UNION ALL SELECT session_id FROM operation_events WHERE received_at > ?)
		UNION ALL
		SELECT session_id, least(toUInt32(timestamp_utc), toUInt32(received_at)) AS first FROM operation_events
		WHERE session_id IN (SELECT session_id FROM payment_events WHERE received_at > ? UNION ALL SELECT session_id FROM operation_events WHERE received_at > ?)
	) AS seen GROUP BY session_id HAVING min(first) > toUInt32(?))
ORDER BY rank DESC, session_id
LIMIT %d`)

// InquiryCandidates returns the parents to ask Ottu about.
func (s *Store) InquiryCandidates(ctx context.Context, q ledger.InquiryQuery) ([]string, error) {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	codes := make([]string, len(q.Codes))
	for i, c := range q.Codes {
		codes[i] = string(c)
	}
	now := q.Now.UTC()
	th := q.Throttle
	young := now.Add(-th.NotBefore)
	return collect(ctx, s.DB, "parents to ask Ottu about", fmt.Sprintf(inquiryCandidatesQuery, max(q.Limit, 1)),
		[]any{codes, q.PendingBefore.UTC(), now.Add(-24 * time.Hour), th.PerDay, now.Add(-th.Apart), young, young, young, young, young},
		func(rows driver.Rows) (id string, err error) { return id, rows.Scan(&id) })
}

// Inquiry is one question to Ottu's Payment Status Query and what it said.
type Inquiry struct {
	SessionID string
	AskedAt   time.Time
	Status    int // Ottu's HTTP status; 0 when it did not answer
	// Verdict is VerdictFound, VerdictNotFound, or "" (no verdict: Error
	// says why, and Body keeps the answer as it came).
	Verdict    string
	DeliveryID string // the answer, stored as a delivery (found only)
	State      string
	Amount     string // texts exactly as Ottu sent them
	Currency   string
	Sandbox    bool
	Children   []events.Child
	Error      string
	Body       []byte
	RunID      string
}

// Verdicts of an inquiry.
const (
	VerdictFound    = "found"
	VerdictNotFound = "not_found"
)

// RecordInquiry keeps a question to Ottu and its answer.
func (s *Store) RecordInquiry(ctx context.Context, q Inquiry) error {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	ids, states, amounts, currencies := []string{}, []string{}, []string{}, []string{}
	for _, c := range q.Children {
		ids, states = append(ids, c.SessionID), append(states, c.State)
		amounts, currencies = append(amounts, c.Amount.String()), append(currencies, c.CurrencyCode)
	}
	w := Writer{DB: s.DB}
	return w.insert(ctx, "ottu_inquiries", `INSERT INTO ottu_inquiries (session_id, asked_at, status, found, verdict, delivery_id,
		state, amount, currency_code, is_sandbox, child_session_ids, child_states, child_amounts, child_currencies, error, body, run_id)`,
		1, func(int) []any {
			return []any{q.SessionID, q.AskedAt, uint16(q.Status), b2u(q.Verdict == VerdictFound), q.Verdict, q.DeliveryID,
				q.State, q.Amount, q.Currency, b2u(q.Sandbox), ids, states, amounts, currencies, q.Error, string(q.Body), q.RunID}
		})
}

// PaymentKeys returns the signed identifiers the payment webhooks of a
// parent carried: its order_no(s) and its attempts' reference_numbers.
func (s *Store) PaymentKeys(ctx context.Context, sessionID string) (orderNos, references []string, err error) {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	err = s.DB.conn.QueryRow(ctx, `SELECT groupUniqArray(order_no), groupUniqArray(reference_number)
		FROM payment_events WHERE session_id = ?`, sessionID).Scan(&orderNos, &references)
	if err != nil {
		return nil, nil, fmt.Errorf("read payment keys of %s: %w", sessionID, err)
	}
	return orderNos, references, nil
}
