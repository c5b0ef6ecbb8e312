package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

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
// with it, so a pass and the writers compare times on one clock.
func (s *Store) Watermark(ctx context.Context) (time.Time, error) {
	return s.DB.Now(ctx)
}

const findingColumns = "session_id, code, toString(severity), toString(status), first_seen, last_seen, resolved_at, alerted_at, published_at, detail, run_id, confirmation"

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
		var resolved, alerted, published *time.Time
		if err := rows.Scan(&r.SessionID, &code, &severity, &r.Status, &r.FirstSeen, &r.LastSeen, &resolved, &alerted, &published, &r.Detail, &r.RunID, &r.Confirmation); err != nil {
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
		if published != nil {
			r.PublishedAt = published.UTC()
		}
		out = append(out, r)
	}
	return out, rows.Err()
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
		last_seen, resolved_at, alerted_at, published_at, detail, run_id, confirmation, version)`, len(recs), func(i int) []any {
		r := recs[i]
		return []any{r.SessionID, string(r.Code), string(r.Severity), r.Status, r.FirstSeen, r.LastSeen,
			nullTime(r.ResolvedAt), nullTime(r.AlertedAt), nullTime(r.PublishedAt), r.Detail, r.RunID, r.Confirmation, versions[i]}
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
		alerts_pending, alert_error, error)`, 1, func(int) []any {
		return []any{r.ID, r.Started, r.Finished, r.Watermark, b2u(r.Full), uint64(r.ParentsEvaluated), uint64(r.ParentsFailed),
			failed, uint64(r.Raised), uint64(r.Resolved), uint64(r.Open), uint64(r.Alerted), uint64(r.AlertsPending),
			r.AlertError, r.Error}
	})
}

// latest orders the deliveries of one parent or operation as the views do:
// terminal first, then the later timestamp_utc (docs/ottu-webhooks.md §4.1),
// then the state's rank, then the later arrival. timestamp_utc is signed by
// no scheme, and Ottu stamps it before it sends: a delivery whose
// timestamp_utc is later than its arrival plus 5 minutes of clock skew ranks
// below every other, so a re-posted body with a forged future time never
// becomes the latest.
const latest = "(toUInt32(timestamp_utc) <= toUInt32(received_at) + 300, is_terminal, timestamp_utc, state_rank, received_at, stream_seq)"

// unreadableKey is what an unreadable delivery is filed under.
const unreadableKey = "if(session_id != '', session_id, delivery_id)"

// anchorSQL maps each anchor of the ledger's time-based rules to the rows
// that carry it: a table, and a condition with two placeholders (the window).
var anchorSQL = map[ledger.Anchor]struct{ table, cond string }{
	ledger.AnchorPaymentReceived:   {"payment_events", "received_at >= ? AND received_at <= ?"},
	ledger.AnchorOperationReceived: {"operation_events", "received_at >= ? AND received_at <= ?"},
	ledger.AnchorAuthorized:        {"payment_events", "state = 'authorized' AND timestamp_utc >= ? AND timestamp_utc <= ?"},
	ledger.AnchorRefundQueued:      {"operation_events", "txn_state IN ('refund_queued', 'refund-queued') AND timestamp_utc >= ? AND timestamp_utc <= ?"},
}

// candidates returns the condition (on column) that keeps the parents sel
// selects, and its args; "" keeps every parent.
func candidates(sel ledger.Selection, column string) (string, []any, error) {
	if sel.All {
		return "", nil, nil
	}
	since := sel.StoredSince.UTC()
	conds := map[string][]string{"payment_events": {"stored_at >= ?"}, "operation_events": {"stored_at >= ?"}}
	args := map[string][]any{"payment_events": {since}, "operation_events": {since}}
	for _, w := range sel.Windows {
		a, ok := anchorSQL[w.Anchor]
		if !ok {
			return "", nil, fmt.Errorf("no query for anchor %s", w.Anchor)
		}
		conds[a.table] = append(conds[a.table], "("+a.cond+")")
		args[a.table] = append(args[a.table], w.From.UTC(), w.To.UTC())
	}
	var parts []string
	var all []any
	for _, table := range []string{"payment_events", "operation_events"} {
		parts = append(parts, "SELECT session_id FROM "+table+" WHERE "+strings.Join(conds[table], " OR "))
		all = append(all, args[table]...)
	}
	parts = append(parts,
		"SELECT "+unreadableKey+" FROM unreadable_webhooks WHERE stored_at >= ?",
		"SELECT session_id FROM payment_events WHERE order_no IN (SELECT order_no FROM merchant_orders WHERE inserted_at >= ?)",
		"SELECT session_id FROM findings WHERE status = 'open'",
		"SELECT session_id FROM ottu_inquiries WHERE asked_at >= ?")
	all = append(all, since, since, since)
	if len(sel.Sessions) > 0 {
		parts = append(parts, "SELECT arrayJoin(?)")
		all = append(all, sel.Sessions)
	}
	return " AND " + column + " IN (\n\t\t" + strings.Join(parts, "\n\t\tUNION ALL ") + ")", all, nil
}

// The three summaries a pass reads, each ordered by the parent's key. Values
// cross as the types they are: Decimals (NULL stays NULL: tupleElement over
// argMax of a tuple keeps the latest delivery's NULL, which a bare argMax
// would skip), arrays and tuples; never joined into delimited text. No
// decimal is ever turned into text (ClickHouse 18.16's toString of a Decimal128
// returns garbage bytes beyond 19 digits and inside tuples) nor gathered into
// an array (groupArray over a Decimal crashes 18.16): what the deliveries of
// an operation said crosses as per-field aggregates (ledger.Seen).
const parentsQuery = `
SELECT session_id, order_no, p_state, p_amount, p_currency, reached, auth_since, refunded, voided, last_received,
	listed, sandbox, has_order, order_amount, order_currency
FROM (
	SELECT session_id,
		argMax(order_no, ` + latest + `) AS order_no,
		argMax(state, ` + latest + `) AS p_state,
		tupleElement(argMax(tuple(amount), ` + latest + `), 1) AS p_amount,
		argMax(currency_code, ` + latest + `) AS p_currency,
		arraySort(groupUniqArray(state)) AS reached,
		toUInt32(minIf(timestamp_utc, state = 'authorized')) AS auth_since,
		tupleElement(argMax(tuple(refunded_amount), ` + latest + `), 1) AS refunded,
		tupleElement(argMax(tuple(voided_amount), ` + latest + `), 1) AS voided,
		toUInt32(max(received_at)) AS last_received,
		groupArrayArray(arrayMap((c, t) -> tuple(c, t), child_session_ids,
			arrayResize([toUInt32(received_at)], length(child_session_ids), toUInt32(received_at)))) AS listed,
		max(is_sandbox) AS sandbox
	FROM payment_events
	WHERE 1 %s
	GROUP BY session_id
) AS p ANY LEFT JOIN (
	SELECT order_no, toUInt8(1) AS has_order, argMax(amount, updated_at) AS order_amount,
		argMax(currency_code, updated_at) AS order_currency
	FROM merchant_orders GROUP BY order_no
) AS o USING order_no
ORDER BY session_id`

const operationsQuery = `
SELECT session_id, reference_number,
	argMax(child_session_id, ` + latest + `),
	argMax(operation, ` + latest + `),
	argMax(source, ` + latest + `),
	argMax(txn_state, ` + latest + `),
	argMax(txn_currency_code, ` + latest + `),
	tupleElement(argMax(tuple(amount), ` + latest + `), 1),
	tupleElement(argMax(tuple(txn_amount), ` + latest + `), 1),
	toUInt32(min(received_at)),
	toUInt32(minIf(timestamp_utc, txn_state IN ('refund_queued', 'refund-queued'))),
	max(is_sandbox),
	arraySort(groupUniqArray(operation)),
	arraySort(groupUniqArray(txn_currency_code)),
	arraySort(groupUniqArray(txn_state)),
	arraySort(groupUniqArray(source)),
	arraySort(groupUniqArray(child_session_id)),
	min(amount), max(amount), toUInt8(countIf(isNull(amount)) > 0),
	min(txn_amount), max(txn_amount), toUInt8(countIf(isNull(txn_amount)) > 0)
FROM operation_events
WHERE 1 %s
GROUP BY session_id, reference_number
ORDER BY session_id, reference_number`

// sharedQuery finds, for the selected parents, the signed references (a
// payment attempt's or an operation's reference_number) delivered under more
// than one parent: one row per parent and reference, with the number of
// parents and the first 20 of them. One signed body re-posted under
// thousands of session_ids must not cost thousands squared.
const sharedQuery = `
SELECT parent, reference_number, n, arraySlice(sessions, 1, 20)
FROM (
	SELECT reference_number, arraySort(groupUniqArray(session_id)) AS sessions, length(sessions) AS n
	FROM %[1]s
	WHERE reference_number != '' AND reference_number IN (SELECT reference_number FROM %[1]s WHERE 1 %[2]s)
	GROUP BY reference_number
	HAVING n > 1
) AS shared
ARRAY JOIN sessions AS parent
WHERE 1 %[3]s`

// sharedRefs returns, per selected parent, the signed references it shares
// with another parent.
func (s *Store) sharedRefs(ctx context.Context, sel ledger.Selection) (map[string][]ledger.Shared, error) {
	inner, innerArgs, err := candidates(sel, "session_id")
	if err != nil {
		return nil, err
	}
	outer, outerArgs, err := candidates(sel, "parent")
	if err != nil {
		return nil, err
	}
	args := append(slices.Clone(innerArgs), outerArgs...)
	out := map[string][]ledger.Shared{}
	for _, t := range []struct{ kind, table string }{{"payment", "payment_events"}, {"operation", "operation_events"}} {
		rows, err := s.DB.conn.Query(ctx, fmt.Sprintf(sharedQuery, t.table, inner, outer), args...)
		if err != nil {
			return nil, fmt.Errorf("query shared references: %w", err)
		}
		for rows.Next() {
			var parent string
			var n uint64
			sh := ledger.Shared{Kind: t.kind}
			if err := rows.Scan(&parent, &sh.ReferenceNumber, &n, &sh.Sessions); err != nil {
				rows.Close()
				return nil, fmt.Errorf("scan shared reference: %w", err)
			}
			sh.Parents = int(n)
			out[parent] = append(out[parent], sh)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read shared references: %w", err)
		}
	}
	return out, nil
}

// ottuQuery reads Ottu's own record of each parent, as the last answer of
// its Payment Status Query gave it.
const ottuQuery = `
SELECT session_id, toUInt32(max(asked_at)), argMax(found, asked_at), argMax(state, asked_at),
	argMax(child_session_ids, asked_at), argMax(child_states, asked_at), argMax(child_amounts, asked_at)
FROM ottu_inquiries
WHERE status IN (200, 404) %s
GROUP BY session_id
ORDER BY session_id`

const unreadableQuery = `
SELECT ` + unreadableKey + ` AS key, delivery_id, any(kind), any(field), any(reason), toUInt32(min(received_at))
FROM unreadable_webhooks
WHERE 1 %s
GROUP BY key, delivery_id
ORDER BY key, delivery_id`

// Parents streams the selected parents in session_id order: the payment,
// operation and unreadable summaries, each ordered by the parent's key,
// merged here. No table is loaded into memory.
func (s *Store) Parents(ctx context.Context, sel ledger.Selection, fn func(*ledger.Parent) error) error {
	shared, err := s.sharedRefs(ctx, sel)
	if err != nil {
		return err
	}
	var streams [4]*summaryReader
	for i, q := range []struct {
		query, column string
		scan          func(driver.Rows) (string, func(*ledger.Parent), error)
	}{
		{parentsQuery, "session_id", scanParent},
		{operationsQuery, "session_id", scanOperation},
		{unreadableQuery, unreadableKey, scanUnreadable},
		{ottuQuery, "session_id", scanOttu},
	} {
		filter, args, err := candidates(sel, q.column)
		if err != nil {
			return err
		}
		rows, err := s.DB.conn.Query(ctx, fmt.Sprintf(q.query, filter), args...)
		if err != nil {
			return fmt.Errorf("query parent summaries: %w", err)
		}
		defer rows.Close()
		streams[i] = &summaryReader{rows: rows, scan: q.scan}
	}
	for {
		// The smallest key any stream holds next is the next parent.
		key, done := "", true
		for _, r := range streams {
			k, ok, err := r.peek()
			if err != nil {
				return err
			}
			if ok && (done || k < key) {
				key, done = k, false
			}
		}
		if done {
			return nil
		}
		p := &ledger.Parent{SessionID: key}
		for _, r := range streams {
			if err := r.take(key, p); err != nil {
				return err
			}
		}
		p.Shared = shared[key]
		if err := fn(p); err != nil {
			return err
		}
	}
}

// summaryReader reads one ordered summary, one parent's rows at a time.
type summaryReader struct {
	rows driver.Rows
	scan func(driver.Rows) (key string, apply func(*ledger.Parent), err error)

	key   string
	apply func(*ledger.Parent)
	full  bool
	done  bool
}

func (r *summaryReader) peek() (string, bool, error) {
	if r.full {
		return r.key, true, nil
	}
	if r.done {
		return "", false, nil
	}
	if !r.rows.Next() {
		r.done = true
		if err := r.rows.Err(); err != nil {
			return "", false, fmt.Errorf("read parent summaries: %w", err)
		}
		return "", false, nil
	}
	key, apply, err := r.scan(r.rows)
	if err != nil {
		return "", false, err
	}
	r.key, r.apply, r.full = key, apply, true
	return key, true, nil
}

// take applies every row of key to p.
func (r *summaryReader) take(key string, p *ledger.Parent) error {
	for {
		k, ok, err := r.peek()
		if err != nil {
			return err
		}
		if !ok || k != key {
			return nil
		}
		r.apply(p)
		r.full = false
	}
}

// amount turns a scanned Nullable(Decimal) into an Amount.
func amount(d *decimal.Decimal) events.Amount {
	if d == nil {
		return events.Amount{}
	}
	return events.Amount{Decimal: *d, Valid: true}
}

func unixTime(sec uint32) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(int64(sec), 0).UTC()
}

func scanParent(rows driver.Rows) (string, func(*ledger.Parent), error) {
	var (
		p                       ledger.Parent
		amt, refunded, voided   *decimal.Decimal
		orderAmount             decimal.Decimal
		orderCurrency           string
		reached                 []string
		listed                  [][]any
		authSince, lastReceived uint32
		sandbox, hasOrder       uint8
	)
	if err := rows.Scan(&p.SessionID, &p.OrderNo, &p.State, &amt, &p.Currency, &reached, &authSince, &refunded, &voided,
		&lastReceived, &listed, &sandbox, &hasOrder, &orderAmount, &orderCurrency); err != nil {
		return "", nil, fmt.Errorf("scan parent summary: %w", err)
	}
	p.HasPayment = true
	p.Amount, p.RefundedAmount, p.VoidedAmount = amount(amt), amount(refunded), amount(voided)
	p.Reached = make(map[string]bool, len(reached))
	for _, s := range reached {
		p.Reached[s] = true
	}
	p.AuthorizedAt, p.LastPaymentAt = unixTime(authSince), unixTime(lastReceived)
	for _, item := range listed {
		child, _ := item[0].(string)
		at, _ := item[1].(uint32)
		t := unixTime(at)
		if p.Listed == nil {
			p.Listed = map[string]time.Time{}
		}
		if first, ok := p.Listed[child]; !ok || t.Before(first) {
			p.Listed[child] = t
		}
	}
	p.Sandbox = sandbox == 1
	if hasOrder == 1 {
		p.Order = &ledger.Order{Amount: events.Amount{Decimal: orderAmount, Valid: true}, Currency: orderCurrency}
	}
	return p.SessionID, func(dst *ledger.Parent) {
		// The payment summary comes first for its key: keep what the other
		// summaries may have added, take the rest.
		p.Operations, p.Unreadable, p.Ottu, p.Err = dst.Operations, dst.Unreadable, dst.Ottu, dst.Err
		p.Sandbox = p.Sandbox || dst.Sandbox
		*dst = p
	}, nil
}

func scanOperation(rows driver.Rows) (string, func(*ledger.Parent), error) {
	var (
		session                       string
		o                             ledger.Operation
		amt, txnAmount                *decimal.Decimal
		first, queued                 uint32
		sandbox                       uint8
		ops                           []string
		minAmount, maxAmount          *decimal.Decimal
		minTxnAmount, maxTxnAmount    *decimal.Decimal
		amountAbsent, txnAmountAbsent uint8
	)
	seen := &o.Seen
	if err := rows.Scan(&session, &o.ReferenceNumber, &o.ChildSessionID, &o.Operation, &o.Source, &o.TxnState,
		&o.TxnCurrency, &amt, &txnAmount, &first, &queued, &sandbox, &ops, &seen.Currencies, &seen.TxnStates,
		&seen.Sources, &seen.Children, &minAmount, &maxAmount, &amountAbsent, &minTxnAmount, &maxTxnAmount, &txnAmountAbsent); err != nil {
		return "", nil, fmt.Errorf("scan operation summary: %w", err)
	}
	o.Amount, o.TxnAmount = amount(amt), amount(txnAmount)
	o.FirstReceived, o.QueuedSince = unixTime(first), unixTime(queued)
	o.Sandbox = sandbox == 1
	for _, op := range ops {
		if op != "" {
			seen.Operations = append(seen.Operations, op)
		}
	}
	seen.Amount = ledger.Range{Min: amount(minAmount), Max: amount(maxAmount), Absent: amountAbsent == 1}
	seen.TxnAmount = ledger.Range{Min: amount(minTxnAmount), Max: amount(maxTxnAmount), Absent: txnAmountAbsent == 1}
	return session, func(p *ledger.Parent) {
		p.Operations = append(p.Operations, o)
		p.Sandbox = p.Sandbox || o.Sandbox
	}, nil
}

func scanOttu(rows driver.Rows) (string, func(*ledger.Parent), error) {
	var (
		session                 string
		asked                   uint32
		found                   uint8
		rec                     ledger.OttuRecord
		children, states, texts []string
	)
	if err := rows.Scan(&session, &asked, &found, &rec.State, &children, &states, &texts); err != nil {
		return "", nil, fmt.Errorf("scan Ottu's record: %w", err)
	}
	rec.AskedAt, rec.Found = unixTime(asked), found == 1
	rec.Children = make(map[string]ledger.OttuChild, len(children))
	var bad error
	for i, child := range children {
		c := ledger.OttuChild{}
		if i < len(states) {
			c.State = states[i]
		}
		if i < len(texts) {
			a, err := events.ParseAmount(texts[i])
			if err != nil && bad == nil {
				bad = fmt.Errorf("Ottu's record of %s: child %s: %w", session, child, err)
			}
			c.Amount = a
		}
		rec.Children[child] = c
	}
	return session, func(p *ledger.Parent) {
		p.Ottu = &rec
		if bad != nil && p.Err == nil {
			p.Err = bad
		}
	}, nil
}

func scanUnreadable(rows driver.Rows) (string, func(*ledger.Parent), error) {
	var (
		key string
		u   ledger.Unreadable
		at  uint32
	)
	if err := rows.Scan(&key, &u.DeliveryID, &u.Kind, &u.Field, &u.Reason, &at); err != nil {
		return "", nil, fmt.Errorf("scan unreadable delivery: %w", err)
	}
	u.ReceivedAt = unixTime(at)
	return key, func(p *ledger.Parent) { p.Unreadable = append(p.Unreadable, u) }, nil
}

// inquiryCandidatesQuery picks the parents to ask Ottu about: an open
// finding of the given codes (most severe first) or a payment still pending
// since before the given time; never a parent created (first seen) less than
// 10 minutes ago (by the earliest timestamp_utc or arrival of its deliveries:
// Ottu created it no later), asked in the last 30 minutes, or asked 3 times
// in a day (Ottu's throttle, docs/ottu-webhooks.md §7.1).
const inquiryCandidatesQuery = `
SELECT session_id
FROM (
	SELECT session_id, max(rank) AS rank
	FROM (
		SELECT session_id, multiIf(severity = 'critical', 3, severity = 'warning', 2, 1) AS rank
		FROM findings WHERE status = 'open' AND code IN (SELECT arrayJoin(?))
		UNION ALL
		SELECT session_id, 1 AS rank
		FROM (SELECT session_id, argMax(state, ` + latest + `) AS st, max(received_at) AS last
			FROM payment_events GROUP BY session_id) AS latest_payments
		WHERE st IN ('created', 'pending', 'attempted') AND last <= ?
	) AS wanted
	GROUP BY session_id
) AS c
WHERE session_id NOT IN (
	SELECT session_id FROM ottu_inquiries WHERE status != 0 GROUP BY session_id
	HAVING countIf(asked_at >= ?) >= 3 OR max(asked_at) > ?)
AND session_id NOT IN (
	SELECT session_id FROM (
		SELECT session_id, min(least(toUInt32(timestamp_utc), toUInt32(received_at))) AS first FROM payment_events GROUP BY session_id
		UNION ALL
		SELECT session_id, min(least(toUInt32(timestamp_utc), toUInt32(received_at))) AS first FROM operation_events GROUP BY session_id
	) AS seen GROUP BY session_id HAVING min(first) > toUInt32(?))
ORDER BY rank DESC, session_id
LIMIT %d`

// InquiryCandidates returns the parents to ask Ottu about.
func (s *Store) InquiryCandidates(ctx context.Context, q ledger.InquiryQuery) ([]string, error) {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	codes := make([]string, len(q.Codes))
	for i, c := range q.Codes {
		codes[i] = string(c)
	}
	now := q.Now.UTC()
	rows, err := s.DB.conn.Query(ctx, fmt.Sprintf(inquiryCandidatesQuery, max(q.Limit, 1)), codes, q.PendingBefore.UTC(),
		now.Add(-24*time.Hour), now.Add(-30*time.Minute), now.Add(-10*time.Minute))
	if err != nil {
		return nil, fmt.Errorf("query parents to ask Ottu about: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("scan parent to ask Ottu about: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// Inquiry is one question to Ottu's Payment Status Query and what it said.
type Inquiry struct {
	SessionID  string
	AskedAt    time.Time
	Status     int // Ottu's HTTP status; 0 when it did not answer
	Found      bool
	DeliveryID string // the answer, stored as a delivery
	State      string
	Children   []events.Child
	Error      string
	RunID      string
}

// RecordInquiry keeps a question to Ottu and its answer.
func (s *Store) RecordInquiry(ctx context.Context, q Inquiry) error {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	ids, states, amounts := []string{}, []string{}, []string{}
	for _, c := range q.Children {
		ids, states, amounts = append(ids, c.SessionID), append(states, c.State), append(amounts, c.Amount.String())
	}
	w := Writer{DB: s.DB}
	return w.insert(ctx, "ottu_inquiries", `INSERT INTO ottu_inquiries (session_id, asked_at, status, found, delivery_id,
		state, child_session_ids, child_states, child_amounts, error, run_id)`, 1, func(int) []any {
		return []any{q.SessionID, q.AskedAt, uint16(q.Status), b2u(q.Found), q.DeliveryID, q.State, ids, states, amounts, q.Error, q.RunID}
	})
}
