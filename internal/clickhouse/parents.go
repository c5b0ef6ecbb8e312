package clickhouse

import (
	"cmp"
	"context"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// Parents streams the selected parents in session_id order, a chunk at a
// time.
func (s *Store) Parents(ctx context.Context, sel ledger.Selection, fn func(*ledger.Parent) error) error {
	indexed, err := s.indexed(ctx)
	if err != nil {
		return err
	}
	shared, err := s.sharedRefs(ctx, sel, indexed)
	if err != nil {
		return err
	}
	var chunks []chunk
	if sel.All {
		chunks, err = s.ranges(ctx)
	} else {
		chunks, err = s.candidateChunks(ctx, sel, indexed)
	}
	if err != nil {
		return err
	}
	for _, c := range chunks {
		parents, err := s.readChunk(ctx, c, indexed)
		if err != nil {
			return err
		}
		for _, p := range parents {
			p.Shared = shared[p.SessionID]
			if err := fn(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// readChunk reads the parents of one chunk, in session_id order: it streams
// each table's rows of the chunk into a ledger.Fold, which decides what the
// parents are.
func (s *Store) readChunk(ctx context.Context, c chunk, indexed bool) ([]*ledger.Parent, error) {
	hint := len(c.sessions)
	if c.sessions == nil {
		hint = cmp.Or(s.ChunkRows, DefaultChunkRows) / 4
	}
	if c.sessions != nil && indexed {
		var err error
		if c.months, err = s.months(ctx, c.sessions); err != nil {
			return nil, err
		}
		c.known = true
	}
	f := ledger.NewFold(hint)
	// Payments and operations fold at once, each on a core of its own (the
	// fold keeps them apart); the rest attaches to the parents they made.
	opsDone := make(chan error, 1)
	go func() { opsDone <- s.streamOperations(ctx, c, f) }()
	err := s.streamPayments(ctx, c, f)
	if opsErr := <-opsDone; err == nil {
		err = opsErr
	}
	if err != nil {
		return nil, err
	}
	for _, step := range []func(context.Context, chunk, *ledger.Fold) error{s.streamOrders, s.streamUnreadable, s.streamOttu} {
		if err := step(ctx, c, f); err != nil {
			return nil, err
		}
	}
	return f.Parents(), nil
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

// rankedColumns are what every delivery row carries to rank it among its
// kind's deliveries (ledger.NewRank), and whether it came from the sandbox;
// ranked scans them.
const rankedColumns = "toUInt32(timestamp_utc), toUInt32(received_at), is_terminal, state_rank, stream_seq, is_sandbox"

type ranked struct {
	timestamp, received          uint32
	terminal, stateRank, sandbox uint8
	seq                          uint64
}

func (k *ranked) dest() []any {
	return []any{&k.timestamp, &k.received, &k.terminal, &k.stateRank, &k.seq, &k.sandbox}
}

func (k *ranked) rank() (ledger.Rank, bool) {
	return ledger.NewRank(k.timestamp, k.received, k.terminal == 1, k.stateRank, k.seq), k.sandbox == 1
}

func (s *Store) streamPayments(ctx context.Context, c chunk, f *ledger.Fold) error {
	var (
		r                     ledger.PaymentRow
		amt, refunded, voided *decimal.Decimal
		recorded              uint8
		rk                    ranked
	)
	return s.streamEvents(ctx, c, "payment_events", `session_id, order_no, state, amount, currency_code, refunded_amount,
	voided_amount, child_session_ids, if(gateway_name != '', gateway_name, gateway_account), `+isRecord,
		append([]any{&r.SessionID, &r.OrderNo, &r.State, &amt, &r.Currency, &refunded, &voided, &r.Children, &r.Gateway, &recorded},
			rk.dest()...),
		func() {
			r.Amount, r.RefundedAmount, r.VoidedAmount = amount(amt), amount(refunded), amount(voided)
			r.Recorded = recorded == 1
			r.Rank, r.Sandbox = rk.rank()
			f.AddPayment(&r)
		})
}

func (s *Store) streamOperations(ctx context.Context, c chunk, f *ledger.Fold) error {
	var (
		r              ledger.OperationRow
		amt, txnAmount *decimal.Decimal
		rk             ranked
	)
	return s.streamEvents(ctx, c, "operation_events", `session_id, reference_number, child_session_id, operation, source,
	txn_state, txn_currency_code, amount, txn_amount`,
		append([]any{&r.SessionID, &r.ReferenceNumber, &r.Child, &r.Operation, &r.Source, &r.TxnState, &r.Currency, &amt,
			&txnAmount}, rk.dest()...),
		func() {
			r.Amount, r.TxnAmount = amount(amt), amount(txnAmount)
			r.Rank, r.Sandbox = rk.rank()
			f.AddOperation(&r)
		})
}

// streamEvents reads columns and rankedColumns of the chunk's deliveries in
// table (payment_events or operation_events) into dest, a row at a time, and
// calls add after each.
func (s *Store) streamEvents(ctx context.Context, c chunk, table, columns string, dest []any, add func()) error {
	ctx, where, args, skip, err := s.eventsCond(ctx, c)
	if err != nil || skip {
		return err
	}
	return s.DB.each(ctx, table, "SELECT "+columns+", "+rankedColumns+"\nFROM "+table+"\nPREWHERE "+where, args,
		func(rows driver.Rows) error {
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			add()
			return nil
		})
}

func (s *Store) streamUnreadable(ctx context.Context, c chunk, f *ledger.Fold) error {
	ctx, where, args, err := s.cond(ctx, c, unreadableKey)
	if err != nil {
		return err
	}
	return s.DB.each(ctx, "unreadable deliveries", `
SELECT `+unreadableKey+` AS key, delivery_id, any(kind), any(field), any(reason), toUInt32(min(received_at))
FROM unreadable_webhooks
WHERE `+where+`
GROUP BY key, delivery_id
ORDER BY key, delivery_id`, args, func(rows driver.Rows) error {
		var (
			key string
			u   ledger.Unreadable
			at  uint32
		)
		if err := rows.Scan(&key, &u.DeliveryID, &u.Kind, &u.Field, &u.Reason, &at); err != nil {
			return err
		}
		u.ReceivedAt = unixTime(at)
		f.AddUnreadable(key, u)
		return nil
	})
}
