package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// Writer stores batches of stream messages. Each batch costs an existence
// query per 4,000 deliveries and one INSERT per table it touches.
type Writer struct {
	DB *DB
}

// WriteResult counts what a batch did.
type WriteResult struct {
	Payments   int // payment deliveries inserted
	Operations int // operation deliveries inserted
	Rejected   int // rejected or unreadable deliveries inserted
	Duplicates int // deliveries already stored (in this batch or before)
}

// Write stores msgs exactly once by delivery id. Duplicates inside the batch
// are dropped; deliveries already in webhooks_raw (or rejected_webhooks) are
// skipped. The typed tables are written before webhooks_raw, which is the
// batch's commit marker: if a later insert fails, the whole batch is retried
// and the typed rows a failed attempt left are duplicates the views and the
// reconciler ignore (and ReplacingMergeTree merges away).
func (w *Writer) Write(ctx context.Context, msgs []events.StreamMessage) (WriteResult, error) {
	var res WriteResult
	ctx, cancel := w.DB.timeout(ctx)
	defer cancel()
	now := time.Now().UTC()

	accepted, rejected := map[string]bool{}, map[string]bool{}
	var acceptedIDs, rejectedIDs []string
	keep := make([]events.StreamMessage, 0, len(msgs))
	for _, m := range msgs {
		if m.Invalid != "" && m.ID == "" {
			m.ID = events.RejectedID(m.Body, m.Invalid)
		}
		set, ids := accepted, &acceptedIDs
		if m.Webhook == nil {
			set, ids = rejected, &rejectedIDs
		}
		if set[m.ID] {
			res.Duplicates++
			continue
		}
		set[m.ID] = true
		*ids = append(*ids, m.ID)
		keep = append(keep, m)
	}
	storedAccepted, err := w.existing(ctx, "webhooks_raw", acceptedIDs)
	if err != nil {
		return res, err
	}
	storedRejected, err := w.existing(ctx, "rejected_webhooks", rejectedIDs)
	if err != nil {
		return res, err
	}

	var payments, operations, rejects, raws []events.StreamMessage
	for _, m := range keep {
		switch {
		case m.Webhook == nil:
			if storedRejected[m.ID] {
				res.Duplicates++
				continue
			}
			rejects = append(rejects, m)
		case storedAccepted[m.ID]:
			res.Duplicates++
			continue
		case m.Webhook.Kind == events.KindPayment:
			payments = append(payments, m)
			raws = append(raws, m)
		default:
			operations = append(operations, m)
			raws = append(raws, m)
		}
	}
	if err := w.insertPayments(ctx, payments); err != nil {
		return res, err
	}
	if err := w.insertOperations(ctx, operations); err != nil {
		return res, err
	}
	if err := w.insertRejected(ctx, rejects, now); err != nil {
		return res, err
	}
	if err := w.insertRaw(ctx, raws, now); err != nil {
		return res, err
	}
	res.Payments, res.Operations, res.Rejected = len(payments), len(operations), len(rejects)
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
			return fmt.Errorf("append row to %s: %w", table, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}

const insertPayments = `INSERT INTO payment_events (delivery_id, stream_seq, received_at, session_id, order_no,
	reference_number, state, result, amount, currency_code, gateway_account, gateway_name, payment_type,
	is_sandbox, paid_amount, settled_amount, refunded_amount, voided_amount, remaining_amount,
	timestamp_utc, is_terminal, state_rank, child_session_ids, child_states, child_amounts, child_currency_codes)`

func (w *Writer) insertPayments(ctx context.Context, msgs []events.StreamMessage) error {
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
		return []any{m.ID, m.StreamSeq, m.ReceivedAt, p.SessionID, p.OrderNo,
			p.ReferenceNumber, p.State, p.Result, dec(p.Amount), p.CurrencyCode, p.GatewayAccount, p.GatewayName, p.PaymentType,
			b2u(p.IsSandbox), dec(p.PaidAmount), dec(p.SettledAmount), dec(p.RefundedAmount), dec(p.VoidedAmount), dec(p.RemainingAmount),
			eventTime(p.Timestamp, m.ReceivedAt), b2u(terminal), rank, ids, states, amounts, currencies}
	})
}

const insertOperations = `INSERT INTO operation_events (delivery_id, stream_seq, received_at, reference_number,
	session_id, order_no, child_session_id, operation, source, result, success, pg_code, amount, txn_amount,
	txn_currency_code, txn_state, is_sandbox, timestamp_utc, is_terminal, state_rank)`

func (w *Writer) insertOperations(ctx context.Context, msgs []events.StreamMessage) error {
	return w.insert(ctx, "operation_events", insertOperations, len(msgs), func(i int) []any {
		m := msgs[i]
		o := m.Webhook.Operation
		terminal, rank := events.TxnStateOrder(o.Txn.State)
		return []any{m.ID, m.StreamSeq, m.ReceivedAt, o.ReferenceNumber,
			o.SessionID, o.OrderNo, o.Txn.SessionID, o.OperationKind(), o.Source, o.Result, b2u(o.Success), o.PGCode,
			dec(o.Amount), dec(o.Txn.Amount), o.Txn.CurrencyCode, o.Txn.State, b2u(o.IsSandbox),
			eventTime(o.Timestamp, m.ReceivedAt), b2u(terminal), rank}
	})
}

const insertRejected = `INSERT INTO rejected_webhooks (delivery_id, received_at, stored_at, stream_seq, reason, body)`

func (w *Writer) insertRejected(ctx context.Context, msgs []events.StreamMessage, now time.Time) error {
	return w.insert(ctx, "rejected_webhooks", insertRejected, len(msgs), func(i int) []any {
		m := msgs[i]
		reason, at := m.Reject, m.ReceivedAt
		if m.Invalid != "" {
			reason = "unreadable stream message: " + m.Invalid
		}
		if at.IsZero() {
			at = now
		}
		return []any{m.ID, at, now, m.StreamSeq, reason, string(m.Body)}
	})
}

const insertRaw = `INSERT INTO webhooks_raw (delivery_id, kind, stream_seq, received_at, stored_at,
	signature_scheme, key_index, body)`

func (w *Writer) insertRaw(ctx context.Context, msgs []events.StreamMessage, now time.Time) error {
	return w.insert(ctx, "webhooks_raw", insertRaw, len(msgs), func(i int) []any {
		m := msgs[i]
		return []any{m.ID, string(m.Webhook.Kind), m.StreamSeq, m.ReceivedAt, now,
			string(m.Scheme), uint8(m.KeyIndex), string(m.Body)}
	})
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
