package clickhouse

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// Writer stores batches of stream messages. Each batch costs a clock query,
// an existence query per table it touches (per 4,000 deliveries), and one
// INSERT per table it touches.
type Writer struct {
	DB *DB
}

// WriteResult counts what a batch did.
type WriteResult struct {
	Payments   int // payment deliveries stored
	Operations int // operation deliveries stored
	Unreadable int // authentic deliveries kept raw because a value cannot be read
	Poisoned   int // deliveries the database refused, kept raw instead (listed in Refused)
	Rejected   int // rejected or invalid messages inserted
	Duplicates int // deliveries already stored (in this batch or before)
	// Refused lists the messages the database refused as decoded: each was
	// kept whole in unreadable_webhooks instead, and is never to be stored
	// again (the stream may terminate it).
	Refused []Refusal
}

// Refusal is a message the database refused: its index in the batch, and why.
type Refusal struct {
	Index  int
	Reason string
}

func (r *WriteResult) add(o WriteResult) {
	r.Payments += o.Payments
	r.Operations += o.Operations
	r.Unreadable += o.Unreadable
	r.Poisoned += o.Poisoned
	r.Rejected += o.Rejected
	r.Duplicates += o.Duplicates
	r.Refused = append(r.Refused, o.Refused...)
}

// Write stores msgs exactly once by delivery id. maybeStored[i] (nil for
// none) tells that an earlier attempt may have stored part of msgs[i] (a
// redelivery, a batch tried again): every table is checked for it then, not
// only the commit markers. When the database refuses the batch for a reason
// retrying cannot fix (a value it cannot hold), the batch is split in halves
// until the messages that cause it stand alone; each of those is kept whole
// in unreadable_webhooks, with the reason, and listed in Refused; the rest is
// stored. Any other failure (the database away, a timeout, too many parts) is
// returned: the caller retries the batch.
func (w *Writer) Write(ctx context.Context, msgs []events.StreamMessage, maybeStored []bool) (WriteResult, error) {
	return w.writeFrom(ctx, msgs, maybeStored, 0)
}

// writeFrom is Write for msgs that start at index base of the caller's batch.
func (w *Writer) writeFrom(ctx context.Context, msgs []events.StreamMessage, maybeStored []bool, base int) (WriteResult, error) {
	res, err := w.write(ctx, msgs, maybeStored)
	if err == nil || !Permanent(err) {
		return res, err
	}
	// Part of the batch may be written: every later attempt checks every table.
	all := make([]bool, len(msgs))
	for i := range all {
		all[i] = true
	}
	if len(msgs) == 1 {
		return w.poison(ctx, msgs[0], base, err)
	}
	mid := len(msgs) / 2
	res, err = w.writeFrom(ctx, msgs[:mid], all[:mid], base)
	if err != nil {
		return res, err
	}
	more, err := w.writeFrom(ctx, msgs[mid:], all[mid:], base+mid)
	res.add(more)
	return res, err
}

// poison keeps m whole in unreadable_webhooks, with why the database refused it.
func (w *Writer) poison(ctx context.Context, m events.StreamMessage, index int, cause error) (WriteResult, error) {
	u := &events.Unreadable{Kind: m.Kind, Reason: "the store refused it: " + cause.Error()}
	if wh := m.Webhook; wh != nil {
		if wh.Payment != nil {
			u.SessionID = wh.Payment.SessionID
		} else {
			u.SessionID = wh.Operation.SessionID
		}
	} else if m.Unreadable != nil {
		u.SessionID, u.Field = m.Unreadable.SessionID, m.Unreadable.Field
	}
	kept := m
	kept.Webhook, kept.Unreadable, kept.Invalid = nil, u, ""
	if kept.ID == "" || kept.Rejected() {
		kept.Reject = ""
		kept.ID = events.RejectedID(m.Body, u.Reason)
	}
	res, err := w.write(ctx, []events.StreamMessage{kept}, []bool{true})
	if err != nil {
		return res, fmt.Errorf("keep refused delivery %s: %w (refused for: %v)", m.ID, err, cause)
	}
	res.Unreadable, res.Poisoned = 0, 1
	res.Refused = []Refusal{{Index: index, Reason: u.Reason}}
	return res, nil
}

// write stores msgs as one attempt. The typed tables are written before
// webhooks_raw, which is the batch's commit marker: a message found there is
// stored. A message that may have been stored in part (maybeStored) may have
// typed rows from an earlier attempt: those tables are checked too, so no row
// is ever inserted twice by a retry. On a cluster with DB.InsertQuorum, each
// insert returns once that many replicas hold it.
func (w *Writer) write(ctx context.Context, msgs []events.StreamMessage, maybeStored []bool) (WriteResult, error) {
	var res WriteResult
	ctx, cancel := w.DB.timeout(ctx)
	defer cancel()
	if w.DB.InsertQuorum > 1 {
		ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{"insert_quorum": w.DB.InsertQuorum,
			"insert_quorum_timeout": 10000})) // ms: fail fast while a replica is down, and retry
	}
	now, err := w.DB.Now(ctx)
	if err != nil {
		return res, err
	}

	// The table that marks each message stored, and the ids per table.
	const (
		raw, unreadable, rejected = "webhooks_raw", "unreadable_webhooks", "rejected_webhooks"
	)
	marker := func(m events.StreamMessage) string {
		switch {
		case m.Webhook != nil:
			return raw
		case m.Unreadable != nil:
			return unreadable
		}
		return rejected
	}
	seen := map[string]map[string]bool{raw: {}, unreadable: {}, rejected: {}}
	ids := map[string][]string{}
	var retryPayments, retryOperations []string
	keep := make([]events.StreamMessage, 0, len(msgs))
	for i, m := range msgs {
		if m.Invalid != "" && m.ID == "" {
			m.ID = events.RejectedID(m.Body, m.Invalid)
		}
		table := marker(m)
		if seen[table][m.ID] {
			res.Duplicates++
			continue
		}
		seen[table][m.ID] = true
		ids[table] = append(ids[table], m.ID)
		if i < len(maybeStored) && maybeStored[i] && m.Webhook != nil {
			if m.Webhook.Kind == events.KindPayment {
				retryPayments = append(retryPayments, m.ID)
			} else {
				retryOperations = append(retryOperations, m.ID)
			}
		}
		keep = append(keep, m)
	}
	stored := map[string]map[string]bool{}
	for _, table := range []string{raw, unreadable, rejected} {
		if stored[table], err = w.existing(ctx, table, ids[table]); err != nil {
			return res, err
		}
	}
	typedPayments, err := w.existing(ctx, "payment_events", retryPayments)
	if err != nil {
		return res, err
	}
	typedOperations, err := w.existing(ctx, "operation_events", retryOperations)
	if err != nil {
		return res, err
	}

	var payments, operations, unreadables, rejects, raws []events.StreamMessage
	for _, m := range keep {
		table := marker(m)
		if stored[table][m.ID] {
			res.Duplicates++
			continue
		}
		switch table {
		case rejected:
			rejects = append(rejects, m)
		case unreadable:
			unreadables = append(unreadables, m)
		default:
			raws = append(raws, m)
			if m.Webhook.Kind == events.KindPayment && !typedPayments[m.ID] {
				payments = append(payments, m)
			} else if m.Webhook.Kind == events.KindOperation && !typedOperations[m.ID] {
				operations = append(operations, m)
			}
		}
	}
	// The typed tables at once (a connection each: the round trips overlap),
	// then webhooks_raw, the commit marker, once they all succeeded.
	steps := []func() error{
		func() error { return w.insertPayments(ctx, payments, now) },
		func() error { return w.insertOperations(ctx, operations, now) },
		func() error { return w.insertUnreadable(ctx, unreadables, now) },
		func() error { return w.insertRejected(ctx, rejects, now) },
	}
	errs := make(chan error, len(steps))
	for _, step := range steps {
		go func() { errs <- step() }()
	}
	var first error
	for range steps {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return res, first
	}
	if err := w.insertRaw(ctx, raws, now); err != nil {
		return res, err
	}
	// Counted as stored now: a delivery whose typed row an earlier, failed
	// attempt wrote is committed by this one.
	for _, m := range raws {
		if m.Webhook.Kind == events.KindPayment {
			res.Payments++
		} else {
			res.Operations++
		}
	}
	res.Unreadable, res.Rejected = len(unreadables), len(rejects)
	return res, nil
}

// existingChunk keeps each lookup's query under ClickHouse's default
// max_query_size (256 KiB): a delivery id is 32 hex characters plus quoting.
const existingChunk = 4000

// existing returns which of ids table already holds.
func (w *Writer) existing(ctx context.Context, table string, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), existingChunk)]
		ids = ids[len(chunk):]
		rows, err := w.DB.conn.Query(ctx, "SELECT delivery_id FROM "+table+" WHERE delivery_id IN (SELECT arrayJoin(?))", chunk)
		if err != nil {
			return nil, fmt.Errorf("look up stored deliveries in %s: %w", table, err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("look up stored deliveries in %s: %w", table, err)
			}
			out[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("look up stored deliveries in %s: %w", table, err)
		}
	}
	return out, nil
}

// errRefused marks a row the client library refused to encode for a column:
// retrying cannot help.
type errRefused struct{ err error }

func (e *errRefused) Error() string { return e.err.Error() }
func (e *errRefused) Unwrap() error { return e.err }

// permanentCodes are ClickHouse error codes about the data itself, which no
// retry can cure: parse and conversion failures, values out of a type's range.
var permanentCodes = map[int32]bool{
	6: true, 27: true, 38: true, 41: true, 53: true, 69: true, 70: true, 72: true, 117: true,
	131: true, 321: true, 407: true, // CANNOT_PARSE_*, TYPE_MISMATCH, ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE, INCORRECT_DATA, TOO_LARGE_STRING_SIZE, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE, DECIMAL_OVERFLOW
}

// Permanent tells whether a write failed because of what it wrote (retrying
// the same rows cannot succeed) rather than because of the database's state.
func Permanent(err error) bool {
	var refused *errRefused
	if errors.As(err, &refused) {
		return true
	}
	var ex *ch.Exception
	return errors.As(err, &ex) && permanentCodes[ex.Code]
}

func (w *Writer) insert(ctx context.Context, table, query string, n int, appendRow func(i int) []any) error {
	if n == 0 {
		return nil
	}
	batch, err := w.DB.conn.PrepareBatch(ctx, query)
	if err != nil {
		return fmt.Errorf("prepare insert into %s: %w", table, err)
	}
	defer batch.Abort() // no-op once sent
	for i := range n {
		if err := batch.Append(appendRow(i)...); err != nil {
			return fmt.Errorf("append row to %s: %w", table, &errRefused{err})
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}

const insertPayments = `INSERT INTO payment_events (delivery_id, stream_seq, received_at, stored_at, session_id, order_no,
	reference_number, state, result, amount, currency_code, gateway_account, gateway_name, payment_type,
	is_sandbox, paid_amount, settled_amount, refunded_amount, voided_amount, remaining_amount,
	timestamp_utc, is_terminal, state_rank, child_session_ids, child_states, child_amounts, child_currency_codes)`

func (w *Writer) insertPayments(ctx context.Context, msgs []events.StreamMessage, now time.Time) error {
	return w.insert(ctx, "payment_events", insertPayments, len(msgs), func(i int) []any {
		m := msgs[i]
		p := m.Webhook.Payment
		terminal, rank := events.PaymentStateOrder(p.State)
		ids, states, amounts, currencies := make([]string, 0, len(p.Transactions)), make([]string, 0, len(p.Transactions)),
			make([]string, 0, len(p.Transactions)), make([]string, 0, len(p.Transactions))
		for _, c := range p.Transactions {
			ids = append(ids, c.SessionID)
			states = append(states, c.State)
			amounts = append(amounts, c.Amount.String())
			currencies = append(currencies, c.CurrencyCode)
		}
		return []any{m.ID, m.StreamSeq, m.ReceivedAt, now, p.SessionID, p.OrderNo,
			p.ReferenceNumber, p.State, p.Result, dec(p.Amount), p.CurrencyCode, p.GatewayAccount, p.GatewayName, p.PaymentType,
			b2u(p.IsSandbox), dec(p.PaidAmount), dec(p.SettledAmount), dec(p.RefundedAmount), dec(p.VoidedAmount), dec(p.RemainingAmount),
			eventTime(p.Timestamp, m.ReceivedAt), b2u(terminal), rank, ids, states, amounts, currencies}
	})
}

const insertOperations = `INSERT INTO operation_events (delivery_id, stream_seq, received_at, stored_at, reference_number,
	session_id, order_no, child_session_id, operation, source, result, success, pg_code, amount, txn_amount,
	txn_currency_code, txn_state, is_sandbox, timestamp_utc, is_terminal, state_rank)`

func (w *Writer) insertOperations(ctx context.Context, msgs []events.StreamMessage, now time.Time) error {
	return w.insert(ctx, "operation_events", insertOperations, len(msgs), func(i int) []any {
		m := msgs[i]
		o := m.Webhook.Operation
		terminal, rank := events.TxnStateOrder(o.Txn.State)
		return []any{m.ID, m.StreamSeq, m.ReceivedAt, now, o.ReferenceNumber,
			o.SessionID, o.OrderNo, o.Txn.SessionID, o.OperationKind(), o.Source, o.Result, b2u(o.Success), o.PGCode,
			dec(o.Amount), dec(o.Txn.Amount), o.Txn.CurrencyCode, o.Txn.State, b2u(o.IsSandbox),
			eventTime(o.Timestamp, m.ReceivedAt), b2u(terminal), rank}
	})
}

const insertUnreadable = `INSERT INTO unreadable_webhooks (delivery_id, stream_seq, received_at, stored_at, kind,
	session_id, field, reason, signature_scheme, key_index, body)`

func (w *Writer) insertUnreadable(ctx context.Context, msgs []events.StreamMessage, now time.Time) error {
	return w.insert(ctx, "unreadable_webhooks", insertUnreadable, len(msgs), func(i int) []any {
		m := msgs[i]
		u := m.Unreadable
		return []any{m.ID, m.StreamSeq, orNow(m.ReceivedAt, now), now, string(u.Kind), u.SessionID, u.Field, u.Reason,
			string(m.Scheme), uint8(m.KeyIndex), string(m.Body)}
	})
}

const insertRejected = `INSERT INTO rejected_webhooks (delivery_id, received_at, stored_at, stream_seq, reason, body)`

func (w *Writer) insertRejected(ctx context.Context, msgs []events.StreamMessage, now time.Time) error {
	return w.insert(ctx, "rejected_webhooks", insertRejected, len(msgs), func(i int) []any {
		m := msgs[i]
		reason := m.Reject
		if m.Invalid != "" {
			reason = "unreadable stream message: " + m.Invalid
		}
		return []any{m.ID, orNow(m.ReceivedAt, now), now, m.StreamSeq, reason, string(m.Body)}
	})
}

const insertRaw = `INSERT INTO webhooks_raw (delivery_id, kind, stream_seq, received_at, stored_at,
	signature_scheme, key_index, body, source)`

func (w *Writer) insertRaw(ctx context.Context, msgs []events.StreamMessage, now time.Time) error {
	return w.insert(ctx, "webhooks_raw", insertRaw, len(msgs), func(i int) []any {
		m := msgs[i]
		return []any{m.ID, string(m.Webhook.Kind), m.StreamSeq, m.ReceivedAt, now,
			string(m.Scheme), uint8(m.KeyIndex), string(m.Body), cmp.Or(m.Source, "webhook")}
	})
}

func orNow(t, now time.Time) time.Time {
	if t.IsZero() {
		return now
	}
	return t
}

// dec maps an absent amount to NULL.
func dec(a events.Amount) *decimal.Decimal {
	if !a.Valid {
		return nil
	}
	d := a.Decimal
	return &d
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// eventTime is timestamp_utc, or the receive time when Ottu sent none.
func eventTime(ts, received time.Time) time.Time {
	if ts.IsZero() {
		return received
	}
	return ts
}
