package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// Store implements ledger.Store on ClickHouse. ClickHouse computes the
// per-parent summaries; two queries, both ordered by session_id, stream them
// and Go merges them, so no table is ever loaded into memory.
type Store struct {
	DB *DB

	lastVersion uint64
}

var _ ledger.Store = (*Store)(nil)

// version returns a strictly increasing finding-row version.
func (s *Store) version() uint64 {
	v := uint64(time.Now().UnixNano())
	if v <= s.lastVersion {
		v = s.lastVersion + 1
	}
	s.lastVersion = v
	return v
}

// LastRun returns the start of the last pass without error.
func (s *Store) LastRun(ctx context.Context) (time.Time, bool, error) {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	var n uint64
	var last time.Time
	if err := s.DB.conn.QueryRow(ctx, "SELECT count(), max(started_at) FROM recon_runs WHERE error = ''").Scan(&n, &last); err != nil {
		return time.Time{}, false, fmt.Errorf("query recon_runs: %w", err)
	}
	return last.UTC(), n > 0, nil
}

const findingColumns = "session_id, code, toString(severity), toString(status), first_seen, last_seen, resolved_at, alerted_at, detail, run_id"

// OpenFindings returns every open finding.
func (s *Store) OpenFindings(ctx context.Context) ([]ledger.Record, error) {
	return s.Findings(ctx, "status = 'open'")
}

// Findings returns findings matching a WHERE clause of the findings view.
func (s *Store) Findings(ctx context.Context, where string, args ...any) ([]ledger.Record, error) {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	rows, err := s.DB.conn.Query(ctx, "SELECT "+findingColumns+" FROM findings WHERE "+where+" ORDER BY session_id, code", args...)
	if err != nil {
		return nil, fmt.Errorf("query findings: %w", err)
	}
	defer rows.Close()
	var out []ledger.Record
	for rows.Next() {
		var r ledger.Record
		var code, severity string
		var resolved, alerted *time.Time
		if err := rows.Scan(&r.SessionID, &code, &severity, &r.Status, &r.FirstSeen, &r.LastSeen, &resolved, &alerted, &r.Detail, &r.RunID); err != nil {
			return nil, fmt.Errorf("scan finding: %w", err)
		}
		r.Code, r.Severity = ledger.Code(code), ledger.Severity(severity)
		r.FirstSeen, r.LastSeen = r.FirstSeen.UTC(), r.LastSeen.UTC()
		if resolved != nil {
			r.ResolvedAt = resolved.UTC()
		}
		if alerted != nil {
			r.AlertedAt = alerted.UTC()
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// SaveFindings writes new versions of findings.
func (s *Store) SaveFindings(ctx context.Context, recs []ledger.Record) error {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	w := Writer{DB: s.DB}
	return w.insert(ctx, "findings_log", `INSERT INTO findings_log (session_id, code, severity, status, first_seen,
		last_seen, resolved_at, alerted_at, detail, run_id, version)`, len(recs), func(i int) []any {
		r := recs[i]
		return []any{r.SessionID, string(r.Code), string(r.Severity), r.Status, r.FirstSeen, r.LastSeen,
			nullTime(r.ResolvedAt), nullTime(r.AlertedAt), r.Detail, r.RunID, s.version()}
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
	return w.insert(ctx, "recon_runs", `INSERT INTO recon_runs (run_id, started_at, finished_at, full_pass,
		parents_evaluated, findings_raised, findings_resolved, findings_open, alerted, alert_error, error)`, 1, func(int) []any {
		return []any{r.ID, r.Started, r.Finished, b2u(r.Full), uint64(r.ParentsEvaluated), uint64(r.Raised),
			uint64(r.Resolved), uint64(r.Open), uint64(r.Alerted), r.AlertError, r.Error}
	})
}

// latest orders the deliveries of one parent or operation as the views do.
const latest = "(is_terminal, timestamp_utc, state_rank, received_at, stream_seq)"

// candidates returns the subquery of session ids a selection evaluates, and its args.
func candidates(sel ledger.Selection) (string, []any) {
	if sel.All {
		return "", nil
	}
	c := sel.Config
	since, now := sel.ChangedSince.UTC(), sel.Now.UTC()
	// Windows in which a time-based rule may have started to fire since the
	// last pass: grace (by arrival), stale authorizations and stuck refunds
	// (by timestamp_utc).
	graceFrom, graceTo := since.Add(-c.Grace), now.Add(-c.Grace)
	staleFrom, staleTo := since.Add(-c.StaleAuthorization), now.Add(-c.StaleAuthorization)
	stuckFrom, stuckTo := since.Add(-c.StuckRefund), now.Add(-c.StuckRefund)
	q := ` AND session_id IN (
		SELECT session_id FROM payment_events WHERE received_at >= ? OR (received_at >= ? AND received_at <= ?)
			OR (state = 'authorized' AND timestamp_utc >= ? AND timestamp_utc <= ?)
		UNION ALL
		SELECT session_id FROM operation_events WHERE received_at >= ? OR (received_at >= ? AND received_at <= ?)
			OR (txn_state = 'refund_queued' AND ((timestamp_utc >= ? AND timestamp_utc <= ?) OR (received_at >= ? AND received_at <= ?)))
		UNION ALL
		SELECT session_id FROM findings WHERE status = 'open')`
	return q, []any{since, graceFrom, graceTo, staleFrom, staleTo,
		since, graceFrom, graceTo, stuckFrom, stuckTo, stuckFrom, stuckTo}
}

const parentsQuery = `
SELECT session_id, order_no, p_state, p_amount, p_currency, reached, auth_since, refunded, voided, last_received,
	listed, sandbox, has_order, order_amount, order_currency
FROM (
	SELECT session_id,
		argMax(order_no, ` + latest + `) AS order_no,
		argMax(state, ` + latest + `) AS p_state,
		argMax(ifNull(toString(amount), ''), ` + latest + `) AS p_amount,
		argMax(currency_code, ` + latest + `) AS p_currency,
		groupUniqArray(state) AS reached,
		toUInt32(minIf(timestamp_utc, state = 'authorized')) AS auth_since,
		argMax(ifNull(toString(refunded_amount), ''), ` + latest + `) AS refunded,
		argMax(ifNull(toString(voided_amount), ''), ` + latest + `) AS voided,
		max(received_at) AS last_received,
		groupArrayArray(arrayMap((c, t) -> concat(c, '|', t), child_session_ids,
			arrayResize([toString(toUInt32(received_at))], length(child_session_ids), toString(toUInt32(received_at))))) AS listed,
		max(is_sandbox) AS sandbox
	FROM payment_events
	WHERE 1 %s
	GROUP BY session_id
) ANY LEFT JOIN (
	SELECT order_no, toUInt8(1) AS has_order, argMax(toString(amount), updated_at) AS order_amount,
		argMax(currency_code, updated_at) AS order_currency
	FROM merchant_orders GROUP BY order_no
) USING order_no
ORDER BY session_id`

const operationsQuery = `
SELECT session_id, reference_number,
	argMax(child_session_id, ` + latest + `),
	argMax(operation, ` + latest + `),
	argMax(source, ` + latest + `),
	argMax(txn_state, ` + latest + `),
	argMax(txn_currency_code, ` + latest + `),
	argMax(ifNull(toString(amount), ''), ` + latest + `),
	argMax(ifNull(toString(txn_amount), ''), ` + latest + `),
	min(received_at),
	toUInt32(minIf(timestamp_utc, txn_state = 'refund_queued')),
	max(is_sandbox),
	groupUniqArray(concat(operation, '|', ifNull(toString(amount), ''), '|', ifNull(toString(txn_amount), ''), '|',
		txn_currency_code, '|', txn_state))
FROM operation_events
WHERE 1 %s
GROUP BY session_id, reference_number
ORDER BY session_id, reference_number`

// Parents streams the selected parents in session_id order.
func (s *Store) Parents(ctx context.Context, sel ledger.Selection, fn func(*ledger.Parent) error) error {
	filter, args := candidates(sel)
	prows, err := s.DB.conn.Query(ctx, fmt.Sprintf(parentsQuery, filter), args...)
	if err != nil {
		return fmt.Errorf("query parent summaries: %w", err)
	}
	defer prows.Close()
	orows, err := s.DB.conn.Query(ctx, fmt.Sprintf(operationsQuery, filter), args...)
	if err != nil {
		return fmt.Errorf("query operation summaries: %w", err)
	}
	defer orows.Close()

	ops := &opReader{rows: orows}
	next := func() (*ledger.Parent, error) {
		if !prows.Next() {
			return nil, prows.Err()
		}
		return scanParent(prows)
	}
	p, err := next()
	if err != nil {
		return err
	}
	for {
		o, err := ops.peek()
		if err != nil {
			return err
		}
		switch {
		case p == nil && o == nil:
			return nil
		case o == nil || (p != nil && p.SessionID < o.session):
			if err := fn(p); err != nil {
				return err
			}
			if p, err = next(); err != nil {
				return err
			}
		default:
			session := o.session
			cur := &ledger.Parent{SessionID: session}
			if p != nil && p.SessionID == session {
				cur = p
				if p, err = next(); err != nil {
					return err
				}
			}
			if err := ops.take(session, cur); err != nil {
				return err
			}
			if err := fn(cur); err != nil {
				return err
			}
		}
	}
}

func scanParent(rows driver.Rows) (*ledger.Parent, error) {
	var (
		p                                     ledger.Parent
		amount, refunded, voided, orderAmount string
		orderCurrency                         string
		reached, listed                       []string
		authSince                             uint32
		lastReceived                          time.Time
		sandbox, hasOrder                     uint8
	)
	if err := rows.Scan(&p.SessionID, &p.OrderNo, &p.State, &amount, &p.Currency, &reached, &authSince, &refunded, &voided,
		&lastReceived, &listed, &sandbox, &hasOrder, &orderAmount, &orderCurrency); err != nil {
		return nil, fmt.Errorf("scan parent summary: %w", err)
	}
	p.HasPayment = true
	var err error
	if p.Amount, err = parseStored(amount); err != nil {
		return nil, err
	}
	if p.RefundedAmount, err = parseStored(refunded); err != nil {
		return nil, err
	}
	if p.VoidedAmount, err = parseStored(voided); err != nil {
		return nil, err
	}
	p.Reached = make(map[string]bool, len(reached))
	for _, s := range reached {
		p.Reached[s] = true
	}
	if authSince > 0 {
		p.AuthorizedAt = time.Unix(int64(authSince), 0).UTC()
	}
	p.LastPaymentAt = lastReceived.UTC()
	for _, item := range listed {
		child, at, _ := strings.Cut(item, "|")
		sec, _ := strconv.ParseInt(at, 10, 64)
		t := time.Unix(sec, 0).UTC()
		if p.Listed == nil {
			p.Listed = map[string]time.Time{}
		}
		if first, ok := p.Listed[child]; !ok || t.Before(first) {
			p.Listed[child] = t
		}
	}
	p.Sandbox = sandbox == 1
	if hasOrder == 1 {
		a, err := parseStored(orderAmount)
		if err != nil {
			return nil, err
		}
		p.Order = &ledger.Order{Amount: a, Currency: orderCurrency}
	}
	return &p, nil
}

// parseStored parses a Decimal column rendered by toString; "" is NULL.
func parseStored(s string) (events.Amount, error) {
	var a events.Amount
	if s == "" {
		return a, nil
	}
	if err := a.UnmarshalJSON([]byte(strconv.Quote(s))); err != nil {
		return a, fmt.Errorf("parse stored amount %q: %w", s, err)
	}
	return a, nil
}

// opReader reads operation summaries, one session at a time.
type opReader struct {
	rows driver.Rows
	head *opRow
	done bool
}

type opRow struct {
	session string
	op      ledger.Operation
}

func (r *opReader) peek() (*opRow, error) {
	if r.head != nil || r.done {
		return r.head, nil
	}
	if !r.rows.Next() {
		r.done = true
		return nil, r.rows.Err()
	}
	var (
		row               opRow
		amount, txnAmount string
		queued            uint32
		sandbox           uint8
		variants          []string
	)
	o := &row.op
	if err := r.rows.Scan(&row.session, &o.ReferenceNumber, &o.ChildSessionID, &o.Operation, &o.Source, &o.TxnState,
		&o.TxnCurrency, &amount, &txnAmount, &o.FirstReceived, &queued, &sandbox, &variants); err != nil {
		return nil, fmt.Errorf("scan operation summary: %w", err)
	}
	var err error
	if o.Amount, err = parseStored(amount); err != nil {
		return nil, err
	}
	if o.TxnAmount, err = parseStored(txnAmount); err != nil {
		return nil, err
	}
	o.FirstReceived = o.FirstReceived.UTC()
	if queued > 0 {
		o.QueuedSince = time.Unix(int64(queued), 0).UTC()
	}
	o.Sandbox = sandbox == 1
	for _, v := range variants {
		parts := strings.SplitN(v, "|", 5)
		if len(parts) != 5 {
			return nil, fmt.Errorf("operation %s: malformed variant %q", o.ReferenceNumber, v)
		}
		va := ledger.Variant{Operation: parts[0], Currency: parts[3], TxnState: parts[4]}
		if va.Amount, err = parseStored(parts[1]); err != nil {
			return nil, err
		}
		if va.TxnAmount, err = parseStored(parts[2]); err != nil {
			return nil, err
		}
		o.Variants = append(o.Variants, va)
	}
	r.head = &row
	return r.head, nil
}

// take moves every operation of session into p.
func (r *opReader) take(session string, p *ledger.Parent) error {
	for {
		o, err := r.peek()
		if err != nil {
			return err
		}
		if o == nil || o.session != session {
			return nil
		}
		p.Operations = append(p.Operations, o.op)
		p.Sandbox = p.Sandbox || o.op.Sandbox
		r.head = nil
	}
}
