package clickhouse

import (
	"context"
	"slices"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// streamOrders reads the merchant order (the latest row of each order_no) of
// the chunk's parents, by the order_nos the fold found.
func (s *Store) streamOrders(ctx context.Context, _ chunk, f *ledger.Fold) error {
	orders := f.OrderNos()
	if len(orders) == 0 {
		return nil
	}
	slices.Sort(orders)
	ctx, in, err := s.inList(ctx, "order_no", orders)
	if err != nil {
		return err
	}
	return s.DB.each(ctx, "merchant orders", `
SELECT order_no, argMax(amount, updated_at), argMax(currency_code, updated_at)
FROM merchant_orders
WHERE `+in+`
GROUP BY order_no`, nil, func(rows driver.Rows) error {
		var (
			o   ledger.OrderRow
			amt decimal.Decimal
		)
		if err := rows.Scan(&o.OrderNo, &amt, &o.Currency); err != nil {
			return err
		}
		o.Amount = events.Amount{Decimal: amt, Valid: true}
		f.AddOrder(o)
		return nil
	})
}

// streamOttu reads Ottu's own record of each parent, as the last answer of
// its Payment Status Query that was a verdict gave it (an answer that was
// none never reaches the rules).
func (s *Store) streamOttu(ctx context.Context, c chunk, f *ledger.Fold) error {
	ctx, where, args, err := s.cond(ctx, c, "session_id")
	if err != nil {
		return err
	}
	return s.DB.each(ctx, "Ottu's records", `
SELECT session_id, toUInt32(max(asked_at)), argMax(verdict, asked_at) = `+sqlString(VerdictFound)+`, argMax(state, asked_at),
	argMax(amount, asked_at), argMax(currency_code, asked_at), argMax(is_sandbox, asked_at),
	argMax(child_session_ids, asked_at), argMax(child_states, asked_at), argMax(child_amounts, asked_at),
	argMax(child_currencies, asked_at)
FROM ottu_inquiries
WHERE verdict IN (`+sqlStrings([]string{VerdictFound, VerdictNotFound})+`) AND session_id != '' AND `+where+`
GROUP BY session_id`, args, func(rows driver.Rows) error {
		var (
			r              ledger.InquiryRow
			asked          uint32
			found, sandbox uint8
		)
		if err := rows.Scan(&r.SessionID, &asked, &found, &r.State, &r.Amount, &r.Currency, &sandbox,
			&r.ChildSessionIDs, &r.ChildStates, &r.ChildAmounts, &r.ChildCurrencies); err != nil {
			return err
		}
		r.AskedAt, r.Found, r.Sandbox = unixTime(asked), found == 1, sandbox == 1
		f.AddInquiry(r)
		return nil
	})
}
