// Package ledger is reconciliation: the rules of docs/product.md ("Finding
// codes") as pure functions over a per-parent summary, and the Reconciler that
// runs a pass through two small interfaces it declares, Store and Notifier.
//
// It imports events and the standard library only; it returns errors and a
// Report, and never logs.
package ledger

import (
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// Code is a finding code (docs/product.md). Users and scripts depend on these names.
type Code string

// The finding codes.
const (
	OperationAmountMismatch Code = "OPERATION_AMOUNT_MISMATCH"
	CurrencyMismatch        Code = "CURRENCY_MISMATCH"
	OverCapture             Code = "OVER_CAPTURE"
	OverRefund              Code = "OVER_REFUND"
	VoidAfterCapture        Code = "VOID_AFTER_CAPTURE"
	VoidAmountMismatch      Code = "VOID_AMOUNT_MISMATCH"
	OperationOnInvalidState Code = "OPERATION_ON_INVALID_STATE"
	ParentTotalsMismatch    Code = "PARENT_TOTALS_MISMATCH"
	MissingOperation        Code = "MISSING_OPERATION"
	OrphanOperation         Code = "ORPHAN_OPERATION"
	PGSideOperation         Code = "PG_SIDE_OPERATION"
	ConflictingDuplicate    Code = "CONFLICTING_DUPLICATE"
	StaleAuthorization      Code = "STALE_AUTHORIZATION"
	StuckRefund             Code = "STUCK_REFUND"
	OrderAmountMismatch     Code = "ORDER_AMOUNT_MISMATCH"
	SandboxInLive           Code = "SANDBOX_IN_LIVE"
	UnreadableWebhook       Code = "UNREADABLE_WEBHOOK"
	ReplayedWebhook         Code = "REPLAYED_WEBHOOK"
	MissingPaymentWebhook   Code = "MISSING_PAYMENT_WEBHOOK"
)

// Severity of a finding.
type Severity string

// The severities.
const (
	Critical Severity = "critical"
	Warning  Severity = "warning"
	Info     Severity = "info"
)

// Severities lists the severities, most severe first.
var Severities = []Severity{Critical, Warning, Info}

// Codes lists every code with its severity, in docs/product.md's order.
var Codes = []struct {
	Code     Code
	Severity Severity
}{
	{OperationAmountMismatch, Critical}, // the gateway moved a different amount than asked
	{CurrencyMismatch, Critical},
	{OverCapture, Critical},
	{OverRefund, Critical},
	{VoidAfterCapture, Critical},
	{VoidAmountMismatch, Warning},
	{OperationOnInvalidState, Critical},
	{ParentTotalsMismatch, Warning},
	{MissingOperation, Warning},
	{OrphanOperation, Warning},
	{PGSideOperation, Warning}, // done behind Ottu's back: someone should know
	{ConflictingDuplicate, Critical},
	{StaleAuthorization, Info}, // money held, nothing wrong yet
	{StuckRefund, Warning},
	{OrderAmountMismatch, Critical},
	{SandboxInLive, Critical},         // a test payment where money is expected
	{UnreadableWebhook, Critical},     // an authentic webhook nobody can reconcile until a person reads it
	{ReplayedWebhook, Critical},       // someone re-posted a signed body with unsigned fields changed
	{MissingPaymentWebhook, Critical}, // money moved and the integration never said so
}

// SeverityOf returns the severity of code.
func SeverityOf(c Code) Severity {
	for _, x := range Codes {
		if x.Code == c {
			return x.Severity
		}
	}
	return Warning
}

// Config holds the thresholds of the time-based rules (RECON_* variables).
type Config struct {
	Grace              time.Duration // RECON_GRACE
	StaleAuthorization time.Duration // RECON_STALE_AUTHORIZATION
	StuckRefund        time.Duration // RECON_STUCK_REFUND
	Live               bool          // OTTU_ENVIRONMENT=live
	// The completeness sweep (docs/completeness.md): an order, or a parent
	// with no final state, is asked about OrderGrace after it was last
	// updated, for at most OrderWatch.
	OrderGrace time.Duration // RECON_ORDER_GRACE
	OrderWatch time.Duration // RECON_ORDER_WATCH
}

// Parent is everything known about one parent payment (session_id): what its
// payment webhooks said, its operations at their latest states, and the
// merchant's order. The store builds it; the rules read it.
type Parent struct {
	SessionID  string
	HasPayment bool // a payment webhook, or Ottu's signed record of the payment, has arrived

	// From the payment webhooks (zero when HasPayment is false).
	OrderNo  string
	State    string // latest state, by Rank (as the payments view shows it)
	Amount   events.Amount
	Currency string
	Reached  map[string]bool // every state any payment webhook (or Ottu's record) carried
	// ByWebhook is every state a webhook itself carried; Recorded, what
	// Ottu's signed record (a Payment Status Query answer stored as a
	// delivery) said of each state it carried, the first time.
	ByWebhook      map[string]bool
	Recorded       map[string]Recorded
	AuthorizedAt   time.Time     // earliest timestamp_utc of an authorized webhook
	RefundedAmount events.Amount // reported by the latest payment webhook
	VoidedAmount   events.Amount
	LastPaymentAt  time.Time            // received_at of the latest-received payment webhook
	Listed         map[string]time.Time // child session_id listed in transactions[] -> first received_at listing it
	Sandbox        bool                 // any webhook of this parent had is_sandbox true
	Gateway        string               // of the latest payment webhook: gateway_name, else gateway_account

	// LastSeq is the highest stream sequence of the parent's deliveries
	// (payments and operations): a new delivery raises it, a copy of one
	// stored twice does not.
	LastSeq uint64

	Operations []Operation
	Order      *Order // the merchant_orders row for OrderNo, if any

	// Unreadable lists the authentic deliveries filed under this parent
	// (or, when no session_id could be read, under their delivery id) that
	// could not be read.
	Unreadable []Unreadable

	// Shared lists the signed references (a payment attempt's or an
	// operation's reference_number) that deliveries of this parent share
	// with another parent: the same signed body under another session_id.
	Shared []Shared

	// Ottu is Ottu's own record of this parent the last time it was asked
	// (nil: never asked).
	Ottu *OttuRecord

	// Err is set when the store could not read this parent whole: the pass
	// does not evaluate it, and the next pass tries again.
	Err error
}

// Recorded is a state as Ottu's signed record gave it.
type Recorded struct {
	Amount   events.Amount
	Currency string
	Since    time.Time // its timestamp_utc: when Ottu says the payment reached it
	AskedAt  time.Time // when ottu-recon got the record
}

// Shared is a reference_number found under several parents.
type Shared struct {
	Kind            string // payment or operation
	ReferenceNumber string
	Parents         int      // how many parents it was seen under, this one included
	Sessions        []string // the first of them (at most 20)
}

// Unreadable is an authentic delivery kept raw because a value cannot be read
// as Ottu documents it, or because the store refused it.
type Unreadable struct {
	DeliveryID string
	Kind       string
	Field      string
	Reason     string
	ReceivedAt time.Time
}

// Operation is one operation (reference_number) at its latest state.
type Operation struct {
	ReferenceNumber string
	ChildSessionID  string
	Operation       string // capture, refund, void (derived from txn.state when Ottu sent null)
	Source          string
	TxnState        string
	TxnCurrency     string
	Amount          events.Amount
	TxnAmount       events.Amount
	FirstReceived   time.Time // received_at of its first delivery
	QueuedSince     time.Time // earliest timestamp_utc of a refund_queued delivery; zero if none
	Sandbox         bool
	Seen            Seen // what its deliveries said, field by field
}

// Variant is what one delivery of an operation said.
type Variant struct {
	Operation string
	Amount    events.Amount
	TxnAmount events.Amount
	Currency  string
	TxnState  string
	Source    string
	Child     string // txn.session_id
}

// Seen sums up what the deliveries of one operation said, field by field:
// the distinct texts, and the range of each amount. It is all that
// CONFLICTING_DUPLICATE needs (two deliveries disagree on a field exactly
// when the field took more than one value), and the store can compute it
// with no decimal ever turned into text.
type Seen struct {
	Operations []string // distinct operation values, "" (null) left out
	Currencies []string // distinct txn.currency_code values
	TxnStates  []string // distinct txn.state values
	Sources    []string // distinct source values (unsigned: never changed by Ottu)
	Children   []string // distinct txn.session_id values (unsigned: never changed by Ottu)
	Amount     Range    // of amount
	TxnAmount  Range    // of txn.amount
}

// Range is the least and greatest of an amount over deliveries.
type Range struct {
	Min, Max events.Amount // over the deliveries that had one; not Valid if none did
	Absent   bool          // some delivery had none
}

func (r *Range) add(a events.Amount) {
	switch {
	case !a.Valid:
		r.Absent = true
	case !r.Min.Valid:
		r.Min, r.Max = a, a
	case a.Decimal.LessThan(r.Min.Decimal):
		r.Min = a
	case a.Decimal.GreaterThan(r.Max.Decimal):
		r.Max = a
	}
}

// Add folds one delivery into s.
func (s *Seen) Add(v Variant) {
	addText := func(set *[]string, x string) {
		if !slices.Contains(*set, x) {
			*set = append(*set, x)
			slices.Sort(*set)
		}
	}
	if v.Operation != "" {
		addText(&s.Operations, v.Operation)
	}
	addText(&s.Currencies, v.Currency)
	addText(&s.TxnStates, v.TxnState)
	addText(&s.Sources, v.Source)
	addText(&s.Children, v.Child)
	s.Amount.add(v.Amount)
	s.TxnAmount.add(v.TxnAmount)
}

// Order is the merchant's expected order (merchant_orders).
type Order struct {
	Amount   events.Amount
	Currency string
}

// Finding is one rule firing for one parent.
type Finding struct {
	SessionID string
	Code      Code
	Severity  Severity
	Detail    string
	// Confirmation is what Ottu's own record says of it, when it was asked:
	// "confirmed by ..." or "contradicted by ..."; "" when not asked.
	Confirmation string
}

// Key identifies a finding: one per parent and code.
type Key struct {
	SessionID string
	Code      Code
}

// Key returns the finding's identity.
func (f Finding) Key() Key { return Key{f.SessionID, f.Code} }

// sum adds amounts exactly; absent amounts count as zero.
func sum(amounts ...events.Amount) decimal.Decimal {
	total := decimal.Zero
	for _, a := range amounts {
		if a.Valid {
			total = total.Add(a.Decimal)
		}
	}
	return total
}
