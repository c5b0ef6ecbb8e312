package ledger

import "time"

// Anchor names a time a rule measures its delay from. The store knows how to
// find the parents whose anchor falls in a window; the ledger alone decides
// which anchors and delays its rules use (Triggers).
type Anchor int

// The anchors.
const (
	// AnchorPaymentReceived: received_at of any payment delivery of the parent.
	AnchorPaymentReceived Anchor = iota + 1
	// AnchorOperationReceived: received_at of any operation delivery of the parent.
	AnchorOperationReceived
	// AnchorAuthorized: timestamp_utc of an authorized payment delivery.
	AnchorAuthorized
	// AnchorRefundQueued: timestamp_utc of a refund_queued operation delivery.
	AnchorRefundQueued
)

func (a Anchor) String() string {
	switch a {
	case AnchorPaymentReceived:
		return "payment received"
	case AnchorOperationReceived:
		return "operation received"
	case AnchorAuthorized:
		return "authorized"
	case AnchorRefundQueued:
		return "refund queued"
	}
	return "unknown anchor"
}

// Trigger says that a rule may start to fire Delay after Anchor, with no new
// delivery: a pass must evaluate the parents whose anchor crossed that line
// since the last pass.
type Trigger struct {
	Rule   Code
	Anchor Anchor
	Delay  time.Duration
}

// Triggers lists the time-based rules of cfg with what each measures from.
// It is the one place that knows them: Evaluate's rules and this list change
// together (TestTriggers checks every time-based rule is here).
func Triggers(cfg Config) []Trigger {
	return []Trigger{
		{ParentTotalsMismatch, AnchorPaymentReceived, cfg.Grace},
		{MissingOperation, AnchorPaymentReceived, cfg.Grace},
		{OrphanOperation, AnchorOperationReceived, cfg.Grace},
		{StaleAuthorization, AnchorAuthorized, cfg.StaleAuthorization},
		{StuckRefund, AnchorRefundQueued, cfg.StuckRefund},
		{StuckRefund, AnchorOperationReceived, cfg.StuckRefund}, // a queued refund with no timestamp_utc
		// The rules that wait RECON_GRACE for the parent's webhook (afterGrace).
		{OperationOnInvalidState, AnchorOperationReceived, cfg.Grace},
		{OverCapture, AnchorOperationReceived, cfg.Grace},
		{OverRefund, AnchorOperationReceived, cfg.Grace},
		{VoidAmountMismatch, AnchorOperationReceived, cfg.Grace},
	}
}

// Window selects the parents with an Anchor time in [From, To].
type Window struct {
	Anchor   Anchor
	From, To time.Time
}

// Selection tells the store which parents a pass evaluates.
type Selection struct {
	// All evaluates every parent (the first pass, or a full pass); the
	// other fields are then ignored.
	All bool
	// StoredSince selects the parents with a delivery (of any kind, readable
	// or not) stored at or after it by the store's clock, and the parents of
	// merchant_orders rows inserted at or after it.
	StoredSince time.Time
	// Windows select the parents for which a time-based rule may have
	// started to fire since the last pass.
	Windows []Window
	// Sessions are evaluated whatever changed: the parents an earlier pass
	// could not evaluate.
	Sessions []string
	// The store also selects every parent with an open finding.
}

// Windows returns, for each trigger, the anchors that crossed their delay
// between the last pass (less Margin) and now.
func Windows(cfg Config, last, now time.Time) []Window {
	var out []Window
	for _, t := range Triggers(cfg) {
		w := Window{Anchor: t.Anchor, From: last.Add(-Margin).Add(-t.Delay), To: now.Add(-t.Delay)}
		merged := false
		for i := range out { // one window per anchor and delay
			if out[i].Anchor == w.Anchor && out[i].From.Equal(w.From) && out[i].To.Equal(w.To) {
				merged = true
			}
		}
		if !merged {
			out = append(out, w)
		}
	}
	return out
}
