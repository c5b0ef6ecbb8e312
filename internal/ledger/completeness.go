package ledger

import (
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// The completeness sweep (docs/completeness.md): each pass asks Ottu's
// Payment Status Query about what should have reached us and has not, an
// order of the merchant's with no payment webhook, and a parent whose
// latest state is one Ottu moves on from; what Ottu's signed record says
// is stored as a delivery and becomes evidence like a webhook.

// movedMoney are the states in which a payment moved money: Ottu's record
// in one of them, with no webhook that said so, is a lost webhook.
var movedMoney = []string{events.StatePaid, events.StateAuthorized}

// MISSING_PAYMENT_WEBHOOK: Ottu's own signed record shows a state in which
// money moved (paid or authorized) that no webhook delivered, for an order
// we never heard of or for a known parent whose webhooks stopped earlier.
// It resolves when Ottu's webhook for that state arrives.
func missingPaymentWebhook(p *Parent, _ Config, _ time.Time, fire fireFunc) {
	for _, state := range movedMoney {
		rec, ok := p.Recorded[state]
		if !ok || p.ByWebhook[state] {
			continue
		}
		about := "payment"
		if p.OrderNo != "" {
			about = "payment of order " + p.OrderNo
		}
		heard := "no webhook of it ever arrived"
		if len(p.ByWebhook) > 0 {
			heard = "its webhooks said only " + reachedList(p.ByWebhook)
		}
		fire(MissingPaymentWebhook, "Ottu's signed record (asked %s) shows the %s %s since %s, and no webhook said so: %s",
			rec.AskedAt.UTC().Format(time.RFC3339), about, state+" "+amountText(rec.Amount, rec.Currency),
			rec.Since.UTC().Format(time.RFC3339), heard)
	}
}

// reachedList names the states of reached in the order of events'
// payment states, most final first.
func reachedList(reached map[string]bool) string {
	out := ""
	for _, s := range []string{events.StateRefunded, events.StatePaid, events.StateAuthorized, events.StateCOD,
		events.StateFailed, events.StateCanceled, events.StateExpired, events.StateInvalided, events.StateAttempted,
		events.StatePending, events.StateCreated} {
		if reached[s] {
			if out != "" {
				out += ", "
			}
			out += s
		}
	}
	return out
}

// Question is one question to Ottu's Payment Status Query: about a parent
// (SessionID), or about a merchant order we never had a payment webhook for
// (OrderNo alone).
type Question struct {
	SessionID string
	OrderNo   string
	Since     time.Time // the order's updated_at, or the parent's latest webhook: the sweep asks the oldest first
}

// SweepQuery asks the store what the completeness sweep should ask Ottu
// about now: orders with no payment webhook whose updated_at is between
// Now-Config.OrderWatch and Now-Config.OrderGrace, and parents whose latest
// state Ottu moves on from (PendingStates) whose latest payment webhook came
// between Now-Config.OrderWatch and PendingBefore; oldest first, at most
// Limit, within Throttle. An unpaid order's questions are spread over the
// watch: its n-th question waits until updated_at + OrderGrace +
// n*(OrderWatch-OrderGrace)/Throttle.PerTransaction.
type SweepQuery struct {
	Now           time.Time
	PendingBefore time.Time
	Grace, Watch  time.Duration
	Limit         int
	Throttle      Throttle
}
