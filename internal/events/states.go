package events

import (
	"slices"
	"strings"
)

// Parent payment states (docs/ottu-webhooks.md §4.1).
const (
	StateCreated    = "created"
	StatePending    = "pending"
	StateAttempted  = "attempted"
	StateAuthorized = "authorized"
	StatePaid       = "paid"
	StateCOD        = "cod"
	StateFailed     = "failed"
	StateCanceled   = "canceled"
	StateExpired    = "expired"
	StateInvalided  = "invalided"
	StateRefunded   = "refunded" // only in the Checkout GET enum (§8.10)
)

// Child transaction states an operation creates (txn.state, §2.2, §4.2).
const (
	TxnPaid           = "paid" // a capture
	TxnRefunded       = "refunded"
	TxnRefundQueued   = "refund_queued"
	TxnRefundRejected = "refund_rejected"
	TxnVoided         = "voided"
)

// Operations (§2.2).
const (
	OpCapture = "capture"
	OpRefund  = "refund"
	OpVoid    = "void"
)

// RefundQueuedSpellings are the spellings of refund_queued in Ottu's
// documents: GB spells it with a hyphen once (§8.9). SQL that selects queued
// refunds uses the same list.
var RefundQueuedSpellings = []string{TxnRefundQueued, "refund-queued"}

// IsRefundQueued tells whether a txn.state is refund_queued, in either
// spelling.
func IsRefundQueued(state string) bool { return state == TxnRefundQueued || state == "refund-queued" }

// PaymentStateOrder tells whether a parent state is terminal (§4.1) and ranks
// states that share a timestamp: success beats failure beats not-yet-final.
// Unknown states are non-terminal with rank 0.
func PaymentStateOrder(state string) (terminal bool, rank uint8) {
	return stateOrder(state, []string{StateInvalided, StateExpired, StateCanceled, StateFailed, StateCOD,
		StateAuthorized, StatePaid, StateRefunded}, []string{StateCreated, StatePending, StateAttempted})
}

// TxnStateOrder does the same for a child's txn.state: refund_queued is the
// only state that later changes (to refunded or refund_rejected, §2.3).
func TxnStateOrder(state string) (terminal bool, rank uint8) {
	if IsRefundQueued(state) {
		state = TxnRefundQueued
	}
	return stateOrder(state, []string{TxnPaid, TxnVoided, TxnRefundRejected, TxnRefunded}, []string{TxnRefundQueued})
}

// stateOrder ranks state by its place in final, else in open (lowest first,
// from 1); a state in neither is not terminal and ranks 0.
func stateOrder(state string, final, open []string) (terminal bool, rank uint8) {
	if i := slices.Index(final, state); i >= 0 {
		return true, uint8(i + 1)
	}
	return false, uint8(slices.Index(open, state) + 1)
}

// OperationKind is the operation an operation webhook performed: its operation
// field, or, when that is empty (the documented refund example sends null,
// §8.8), what its txn.state implies.
func (o *Operation) OperationKind() string {
	if o.Operation != "" {
		return o.Operation
	}
	switch s := o.Txn.State; {
	case s == TxnPaid:
		return OpCapture
	case s == TxnRefunded, s == TxnRefundRejected, IsRefundQueued(s):
		return OpRefund
	case s == TxnVoided:
		return OpVoid
	}
	return ""
}

// CurrencyDecimals is the number of decimals amounts in currency code carry
// (docs/ottu-webhooks.md §6, ISO 4217): 3 for KWD, BHD, OMR, IQD, JOD, LYD, TND; 0 for
// JPY, KRW and a few others; 2 otherwise.
func CurrencyDecimals(code string) int32 {
	switch strings.ToUpper(code) {
	case "KWD", "BHD", "OMR", "IQD", "JOD", "LYD", "TND":
		return 3
	case "JPY", "KRW", "CLP", "ISK", "VND", "XAF", "XOF", "UGX", "PYG", "RWF":
		return 0
	}
	return 2
}

// Format renders the amount for people in currency code: with the currency's
// decimals when that is exact ("25.500 KWD"), else as it is.
func (a Amount) Format(code string) string {
	if !a.Valid {
		return "(none)"
	}
	if code == "" {
		return a.Text(code)
	}
	return a.Text(code) + " " + code
}

// Text is Format without the currency code; "" when absent.
func (a Amount) Text(code string) string {
	if !a.Valid {
		return ""
	}
	if dp := CurrencyDecimals(code); a.Decimal.Equal(a.Decimal.Truncate(dp)) {
		return a.Decimal.StringFixed(dp)
	}
	return a.Decimal.String()
}
