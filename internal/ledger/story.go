package ledger

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// StoryDelivery is one delivery of a payment's story, as the console reads
// it: a payment delivery (Payment), or an operation's.
type StoryDelivery struct {
	Payment         bool
	ReferenceNumber string // the operation's
	Operation       string
	State           string // the payment's state, or the operation's txn.state
	Amount          events.Amount
	TxnAmount       events.Amount
	Currency        string // the payment's currency_code, or the operation's txn.currency_code
	Rank            Rank
}

// StoryStep is what the ledger makes of a payment after one more of its
// deliveries, in order of arrival: its latest state by Rank (as the payments
// view and the pass say, whatever order Ottu delivered in), the amount of
// that latest delivery once a delivery reached paid or authorized, and the
// sums of captures, refunds and voids, each operation at its latest state by
// Rank.
type StoryStep struct {
	At                                    time.Time
	State                                 string
	Amount                                decimal.Decimal // of the latest payment delivery
	Currency                              string          // of the latest payment delivery
	Collected, Captured, Refunded, Voided decimal.Decimal
}

// Story folds a payment's deliveries, given in order of arrival, and
// returns the step after each; the last is the payment as it stands.
func Story(ds []StoryDelivery) []StoryStep {
	type op struct {
		kind, state string
		amount      decimal.Decimal
		rank        Rank
	}
	var (
		out       []StoryStep
		latest    Rank
		have      bool
		state     string
		currency  string
		amount    decimal.Decimal
		collected bool
		ops       = map[string]op{}
	)
	for _, d := range ds {
		if d.Payment {
			if !have || d.Rank.Compare(latest) > 0 {
				latest, have, state, amount, currency = d.Rank, true, d.State, d.Amount.Decimal, d.Currency
			}
			collected = collected || d.State == events.StatePaid || d.State == events.StateAuthorized
		} else if o, ok := ops[d.ReferenceNumber]; !ok || d.Rank.Compare(o.rank) > 0 {
			amt := d.TxnAmount.Decimal
			if !d.TxnAmount.Valid {
				amt = d.Amount.Decimal
			}
			ops[d.ReferenceNumber] = op{kind: d.Operation, state: d.State, amount: amt, rank: d.Rank}
		}
		s := StoryStep{At: unixTime(d.Rank.Received), State: state, Amount: amount, Currency: currency}
		if collected {
			s.Collected = amount
		}
		for _, o := range ops {
			switch {
			case o.kind == events.OpCapture && o.state == events.TxnPaid:
				s.Captured = s.Captured.Add(o.amount)
			case o.kind == events.OpRefund && o.state == events.TxnRefunded:
				s.Refunded = s.Refunded.Add(o.amount)
			case o.kind == events.OpVoid && o.state == events.TxnVoided:
				s.Voided = s.Voided.Add(o.amount)
			}
		}
		out = append(out, s)
	}
	return out
}
