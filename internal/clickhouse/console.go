package clickhouse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// What the console (internal/console) reads and writes. Every query is
// bounded by the DB's QueryTimeout, reads a parent by the event tables'
// sorting key (session_id) or the findings by their view, and takes its
// values as parameters: nothing a person types reaches the SQL text.

// FindingFilter selects findings for the console's list, its counts and its
// export.
type FindingFilter struct {
	// Status is "open" (open, nobody acknowledged it: the default),
	// "acknowledged" (open, acknowledged), "resolved", or "all".
	Status   string
	Code     string
	Severity string
	// OlderThan keeps findings first seen at least this long ago (0: any age).
	OlderThan time.Duration
	Gateway   string
	Currency  string
	// Search is a session_id, an order_no or a reference_number (of the
	// payment or of an operation): the findings of the parents it names.
	Search string
}

// ConsoleFinding is one row of the findings list.
type ConsoleFinding struct {
	SessionID      string
	Code           string
	Severity       string
	Status         string
	FirstSeen      time.Time
	LastSeen       time.Time
	ResolvedAt     *time.Time
	Detail         string
	Evidence       string
	Amount         decimal.Decimal
	Currency       string
	Gateway        string
	AcknowledgedBy string
	AcknowledgedAt *time.Time
	ResolvedBy     string
	MutedUntil     *time.Time
	Confirmation   string
}

// where renders the filter as a WHERE clause over the findings view, with
// its arguments. now is the server's clock for the age.
func (f FindingFilter) where(withStatus bool) (string, []any) {
	var conds []string
	var args []any
	if withStatus {
		switch f.Status {
		case "acknowledged":
			conds = append(conds, "status = 'open' AND acknowledged_by != ''")
		case "resolved":
			conds = append(conds, "status = 'resolved'")
		case "all":
		default:
			conds = append(conds, "status = 'open' AND acknowledged_by = ''")
		}
	}
	if f.Code != "" {
		conds, args = append(conds, "code = ?"), append(args, f.Code)
	}
	if f.Severity != "" {
		conds, args = append(conds, "toString(severity) = ?"), append(args, f.Severity)
	}
	if f.OlderThan > 0 {
		conds, args = append(conds, "first_seen <= now() - ?"), append(args, uint64(f.OlderThan/time.Second))
	}
	if f.Gateway != "" {
		conds, args = append(conds, "gateway = ?"), append(args, f.Gateway)
	}
	if f.Currency != "" {
		conds, args = append(conds, "currency_code = ?"), append(args, f.Currency)
	}
	if f.Search != "" {
		conds = append(conds, `(session_id = ? OR session_id IN (SELECT session_id FROM parent_keys
			WHERE key_kind IN ('payment_reference', 'operation_reference', 'order_no') AND key = ?))`)
		args = append(args, f.Search, f.Search)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

const consoleFindingColumns = `session_id, code, toString(severity), status, first_seen, last_seen, resolved_at, detail, evidence,
	amount, currency_code, gateway, acknowledged_by, acknowledged_at, resolved_by, muted_until, confirmation`

func scanConsoleFinding(scan func(...any) error) (ConsoleFinding, error) {
	var f ConsoleFinding
	err := scan(&f.SessionID, &f.Code, &f.Severity, &f.Status, &f.FirstSeen, &f.LastSeen, &f.ResolvedAt, &f.Detail, &f.Evidence,
		&f.Amount, &f.Currency, &f.Gateway, &f.AcknowledgedBy, &f.AcknowledgedAt, &f.ResolvedBy, &f.MutedUntil, &f.Confirmation)
	f.FirstSeen, f.LastSeen = f.FirstSeen.UTC(), f.LastSeen.UTC()
	for _, t := range []*time.Time{f.ResolvedAt, f.AcknowledgedAt, f.MutedUntil} {
		if t != nil {
			*t = t.UTC()
		}
	}
	return f, err
}

// FindingsPage returns the findings f selects, most severe and oldest first,
// limit of them from offset.
func (db *DB) FindingsPage(ctx context.Context, f FindingFilter, offset, limit int) ([]ConsoleFinding, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	where, args := f.where(true)
	rows, err := db.conn.Query(ctx, "SELECT "+consoleFindingColumns+" FROM findings"+where+
		" ORDER BY severity DESC, first_seen, session_id, code LIMIT ?, ?", append(args, uint64(offset), uint64(limit))...)
	if err != nil {
		return nil, fmt.Errorf("query findings: %w", err)
	}
	defer rows.Close()
	var out []ConsoleFinding
	for rows.Next() {
		cf, err := scanConsoleFinding(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("scan finding: %w", err)
		}
		out = append(out, cf)
	}
	return out, rows.Err()
}

// EachFinding streams every finding f selects to fn, in the list's order
// (the CSV export).
func (db *DB) EachFinding(ctx context.Context, f FindingFilter, fn func(ConsoleFinding) error) error {
	where, args := f.where(true)
	rows, err := db.conn.Query(ctx, "SELECT "+consoleFindingColumns+" FROM findings"+where+
		" ORDER BY severity DESC, first_seen, session_id, code", args...)
	if err != nil {
		return fmt.Errorf("query findings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		cf, err := scanConsoleFinding(rows.Scan)
		if err != nil {
			return fmt.Errorf("scan finding: %w", err)
		}
		if err := fn(cf); err != nil {
			return err
		}
	}
	return rows.Err()
}

// FindingGroup counts findings of one code, severity, status and currency,
// opened (or resolved) on one day in the recent window.
type FindingGroup struct {
	Code     string
	Severity string
	Status   string // open, acknowledged or resolved (as FindingFilter.Status)
	Currency string
	Opened   time.Time // the UTC day first seen, zero when before the window
	Resolved time.Time // the UTC day resolved, zero when open or before the window
	Count    uint64
	Amount   decimal.Decimal // the money at stake, summed
}

// FindingGroups summarises the findings f selects, whatever their status
// (f.Status is ignored): the console's counts and pictures. Days before
// since are folded into the zero day.
func (db *DB) FindingGroups(ctx context.Context, f FindingFilter, since time.Time) ([]FindingGroup, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	where, args := f.where(false)
	day := since.UTC().Truncate(24 * time.Hour)
	q := `SELECT code, toString(severity),
		multiIf(status = 'resolved', 'resolved', acknowledged_by != '', 'acknowledged', 'open') AS st,
		currency_code,
		toUInt32(if(first_seen >= ?, toStartOfDay(first_seen), toDateTime(0))) AS opened,
		toUInt32(if(status = 'resolved' AND ifNull(resolved_at, toDateTime(0)) >= ?, toStartOfDay(assumeNotNull(resolved_at)), toDateTime(0))) AS closed,
		count(), sum(amount)
	FROM findings` + where + `
	GROUP BY code, severity, st, currency_code, opened, closed`
	rows, err := db.conn.Query(ctx, q, append([]any{day, day}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("query finding groups: %w", err)
	}
	defer rows.Close()
	var out []FindingGroup
	for rows.Next() {
		var g FindingGroup
		var opened, closed uint32
		if err := rows.Scan(&g.Code, &g.Severity, &g.Status, &g.Currency, &opened, &closed, &g.Count, &g.Amount); err != nil {
			return nil, fmt.Errorf("scan finding group: %w", err)
		}
		g.Opened, g.Resolved = unixTime(opened), unixTime(closed)
		out = append(out, g)
	}
	return out, rows.Err()
}

// FindingFacets lists the gateways and currencies findings carry: the
// console's filter choices.
func (db *DB) FindingFacets(ctx context.Context) (gateways, currencies []string, err error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	rows, err := db.conn.Query(ctx, `SELECT groupUniqArray(gateway), groupUniqArray(currency_code) FROM findings_log`)
	if err != nil {
		return nil, nil, fmt.Errorf("query facets: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(&gateways, &currencies); err != nil {
			return nil, nil, fmt.Errorf("scan facets: %w", err)
		}
	}
	return dropEmpty(gateways), dropEmpty(currencies), rows.Err()
}

func dropEmpty(xs []string) []string {
	out := xs[:0]
	for _, x := range xs {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

// Delivery is one delivery of a payment's story: a payment or operation
// webhook, or one that could not be read.
type Delivery struct {
	Kind            string // payment, operation or unreadable
	DeliveryID      string
	ReceivedAt      time.Time
	StoredAt        time.Time
	Timestamp       time.Time // timestamp_utc
	ReferenceNumber string
	Operation       string
	State           string // the payment's state, or the operation's txn.state
	Amount          *decimal.Decimal
	TxnAmount       *decimal.Decimal
	Currency        string
	Source          string // the operation's source (ottu or pg)
	Via             string // how it came: webhook, or Ottu's status query
	Scheme          string // signature scheme
	KeyIndex        uint8
	Seq             uint64
	Problem         string // why an unreadable delivery could not be read
}

// Story is everything the store holds about one parent payment.
type Story struct {
	SessionID  string
	OrderNo    string
	Deliveries []Delivery // by arrival
	Order      *MerchantOrder
	Inquiries  []OttuAnswer
	Versions   []FindingVersion // every version of every finding, oldest first
	Findings   []ConsoleFinding // as the findings view shows them now
	Actions    []Action         // oldest first
}

// MerchantOrder is the merchant's order of the payment (merchant_orders).
type MerchantOrder struct {
	Amount    decimal.Decimal
	Currency  string
	UpdatedAt time.Time
}

// OttuAnswer is one of Ottu's answers to a status query about the payment.
type OttuAnswer struct {
	AskedAt  time.Time
	Status   uint16
	Verdict  string
	State    string
	Amount   string
	Currency string
	Error    string
}

// FindingVersion is one version of a finding, as a pass wrote it.
type FindingVersion struct {
	Code      string
	Severity  string
	Status    string
	LastSeen  time.Time
	Detail    string
	Evidence  string
	RunID     string
	AlertedAt *time.Time
}

// Action is what a person did about a finding (finding_actions).
type Action struct {
	SessionID string
	Code      string
	Action    string // acknowledge, resolve, mute or note
	Actor     string
	At        time.Time
	Note      string
	Until     *time.Time
	Evidence  string
	ID        string
}

// Story reads everything about the parent sessionID: its deliveries, its
// order, Ottu's answers, its findings with their versions, and the actions
// people took. A parent with nothing stored returns a Story without
// deliveries or findings.
func (db *DB) Story(ctx context.Context, sessionID string) (*Story, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	s := &Story{SessionID: sessionID}
	rows, err := db.conn.Query(ctx, `
SELECT kind, e.delivery_id, received_at, stored_at, timestamp_utc, reference_number, operation, state, amount, txn_amount,
	currency, op_source, r.source, r.signature_scheme, r.key_index, seq, problem, order_no
FROM (
	SELECT 'payment' AS kind, delivery_id, toUInt32(received_at) AS received_at, toUInt32(stored_at) AS stored_at,
		toUInt32(timestamp_utc) AS timestamp_utc, reference_number, '' AS operation, state, amount,
		CAST(NULL AS Nullable(Decimal(38, 8))) AS txn_amount, currency_code AS currency, '' AS op_source,
		stream_seq AS seq, '' AS problem, order_no
	FROM payment_events WHERE session_id = ?
	UNION ALL
	SELECT 'operation', delivery_id, toUInt32(received_at), toUInt32(stored_at), toUInt32(timestamp_utc), reference_number,
		operation, txn_state, amount, txn_amount, txn_currency_code, source, stream_seq, '', order_no
	FROM operation_events WHERE session_id = ?
	UNION ALL
	SELECT 'unreadable', delivery_id, toUInt32(received_at), toUInt32(stored_at), 0, '', kind, '',
		CAST(NULL AS Nullable(Decimal(38, 8))), CAST(NULL AS Nullable(Decimal(38, 8))), '', '', stream_seq,
		concat(field, ': ', reason), ''
	FROM unreadable_webhooks WHERE session_id = ?
) AS e
ANY LEFT JOIN (
	SELECT delivery_id, source, signature_scheme, key_index FROM webhooks_raw
	WHERE delivery_id IN (
		SELECT delivery_id FROM payment_events WHERE session_id = ?
		UNION ALL SELECT delivery_id FROM operation_events WHERE session_id = ?)
) AS r USING (delivery_id)
ORDER BY received_at, seq, delivery_id
LIMIT 1 BY delivery_id`, sessionID, sessionID, sessionID, sessionID, sessionID)
	if err != nil {
		return nil, fmt.Errorf("query deliveries: %w", err)
	}
	for rows.Next() {
		var d Delivery
		var received, stored, ts uint32
		var orderNo string
		if err := rows.Scan(&d.Kind, &d.DeliveryID, &received, &stored, &ts, &d.ReferenceNumber, &d.Operation, &d.State,
			&d.Amount, &d.TxnAmount, &d.Currency, &d.Source, &d.Via, &d.Scheme, &d.KeyIndex, &d.Seq, &d.Problem, &orderNo); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan delivery: %w", err)
		}
		d.ReceivedAt, d.StoredAt, d.Timestamp = unixTime(received), unixTime(stored), unixTime(ts)
		if d.Kind == "payment" && orderNo != "" {
			s.OrderNo = orderNo
		}
		s.Deliveries = append(s.Deliveries, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read deliveries: %w", err)
	}

	if s.OrderNo != "" {
		var o MerchantOrder
		var n uint64
		err := db.conn.QueryRow(ctx, `SELECT count(), argMax(amount, updated_at), argMax(currency_code, updated_at), max(updated_at)
			FROM merchant_orders WHERE order_no = ?`, s.OrderNo).Scan(&n, &o.Amount, &o.Currency, &o.UpdatedAt)
		if err != nil {
			return nil, fmt.Errorf("query merchant order: %w", err)
		}
		if n > 0 {
			o.UpdatedAt = o.UpdatedAt.UTC()
			s.Order = &o
		}
	}

	rows, err = db.conn.Query(ctx, `SELECT asked_at, status, verdict, state, amount, currency_code, error
		FROM ottu_inquiries WHERE session_id = ? ORDER BY asked_at`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("query Ottu's answers: %w", err)
	}
	for rows.Next() {
		var q OttuAnswer
		if err := rows.Scan(&q.AskedAt, &q.Status, &q.Verdict, &q.State, &q.Amount, &q.Currency, &q.Error); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan Ottu's answer: %w", err)
		}
		q.AskedAt = q.AskedAt.UTC()
		s.Inquiries = append(s.Inquiries, q)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read Ottu's answers: %w", err)
	}

	rows, err = db.conn.Query(ctx, `SELECT code, toString(severity), toString(status), last_seen, detail, evidence, run_id, alerted_at
		FROM findings_log WHERE session_id = ? ORDER BY version`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("query finding versions: %w", err)
	}
	for rows.Next() {
		var v FindingVersion
		if err := rows.Scan(&v.Code, &v.Severity, &v.Status, &v.LastSeen, &v.Detail, &v.Evidence, &v.RunID, &v.AlertedAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan finding version: %w", err)
		}
		v.LastSeen = v.LastSeen.UTC()
		s.Versions = append(s.Versions, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read finding versions: %w", err)
	}

	rows, err = db.conn.Query(ctx, "SELECT "+consoleFindingColumns+" FROM findings WHERE session_id = ? ORDER BY severity DESC, code", sessionID)
	if err != nil {
		return nil, fmt.Errorf("query findings: %w", err)
	}
	for rows.Next() {
		f, err := scanConsoleFinding(rows.Scan)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan finding: %w", err)
		}
		s.Findings = append(s.Findings, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read findings: %w", err)
	}

	s.Actions, err = db.Actions(ctx, sessionID)
	return s, err
}

// Actions returns the actions people took on the parent's findings, oldest
// first.
func (db *DB) Actions(ctx context.Context, sessionID string) ([]Action, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	rows, err := db.conn.Query(ctx, `SELECT session_id, code, toString(action), actor, at, note, until, evidence, action_id
		FROM finding_actions WHERE session_id = ? ORDER BY at, action_id LIMIT 1 BY action_id`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("query finding_actions: %w", err)
	}
	defer rows.Close()
	var out []Action
	for rows.Next() {
		var a Action
		if err := rows.Scan(&a.SessionID, &a.Code, &a.Action, &a.Actor, &a.At, &a.Note, &a.Until, &a.Evidence, &a.ID); err != nil {
			return nil, fmt.Errorf("scan finding_actions: %w", err)
		}
		a.At = a.At.UTC()
		if a.Until != nil {
			*a.Until = a.Until.UTC()
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// RawBody returns the body of the delivery id of the parent sessionID as it
// was received (webhooks_raw, or unreadable_webhooks); false if the parent
// has no such delivery.
func (db *DB) RawBody(ctx context.Context, sessionID, deliveryID string) ([]byte, bool, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	var bodies []string
	err := db.conn.QueryRow(ctx, `SELECT groupArray(body) FROM (
		SELECT body FROM webhooks_raw WHERE delivery_id = ? AND delivery_id IN (
			SELECT delivery_id FROM payment_events WHERE session_id = ?
			UNION ALL SELECT delivery_id FROM operation_events WHERE session_id = ?)
		UNION ALL
		SELECT body FROM unreadable_webhooks WHERE delivery_id = ? AND session_id = ?)`,
		deliveryID, sessionID, sessionID, deliveryID, sessionID).Scan(&bodies)
	if err != nil {
		return nil, false, fmt.Errorf("query raw body: %w", err)
	}
	if len(bodies) == 0 {
		return nil, false, nil
	}
	return []byte(bodies[0]), true, nil
}

// Action kinds (finding_actions.action).
const (
	ActionAcknowledge = "acknowledge"
	ActionResolve     = "resolve"
	ActionMute        = "mute"
	ActionNote        = "note"
)

// ErrNoFinding is returned by AddAction for a finding that does not exist.
var ErrNoFinding = errors.New("no such finding")

// AddAction records what a person did about the finding (a.SessionID,
// a.Code), which must exist. a.Evidence is the finding's evidence the person
// saw (the form carries it); empty, it is the finding's evidence now. a.At is set to the server's clock when zero,
// and a.ID to a new id. The insert is retried with the same id, so it is
// kept once.
func (db *DB) AddAction(ctx context.Context, a Action) (Action, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	var found uint8
	var evidence string
	if err := db.conn.QueryRow(ctx, "SELECT count() > 0, argMax(evidence, version) FROM findings_log WHERE session_id = ? AND code = ?",
		a.SessionID, a.Code).Scan(&found, &evidence); err != nil {
		return a, fmt.Errorf("look up the finding: %w", err)
	}
	if found == 0 {
		return a, ErrNoFinding
	}
	if a.Evidence == "" {
		a.Evidence = evidence // the finding as it stands now
	}
	if a.At.IsZero() {
		now, err := db.Now(ctx)
		if err != nil {
			return a, err
		}
		a.At = now
	}
	if a.ID == "" {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		a.ID = hex.EncodeToString(b)
	}
	w := Writer{DB: db}
	var err error
	for range 3 { // a copy stored by a failed attempt is the same row: one action
		err = w.insert(ctx, "finding_actions", `INSERT INTO finding_actions (session_id, code, action, actor, at, note, until, evidence, action_id)`, 1,
			func(int) []any {
				return []any{a.SessionID, a.Code, a.Action, a.Actor, a.At, a.Note, a.Until, a.Evidence, a.ID}
			})
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	return a, err
}
