package ledger

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// Evaluate runs every rule on p at time now and returns the findings that
// fire, ordered by code. Rules that need the parent run only once its payment
// webhook has arrived; before that only ORPHAN_OPERATION and
// UNREADABLE_WEBHOOK can fire (docs/product.md).
func Evaluate(p *Parent, cfg Config, now time.Time) []Finding {
	var out []Finding
	fire := func(c Code, format string, args ...any) {
		detail := fmt.Sprintf(format, args...)
		if fields := unsignedInputs[c]; fields != "" {
			detail += " [rests on values no signature covers: " + fields + "]"
		}
		out = append(out, Finding{SessionID: p.SessionID, Code: c, Severity: SeverityOf(c), Detail: CleanDetail(detail)})
	}
	unreadableWebhook(p, cfg, now, fire)
	replayedWebhook(p, cfg, now, fire)
	if !p.HasPayment {
		orphan(p, cfg, now, fire)
	} else {
		for _, rule := range rules {
			rule(p, cfg, now, fire)
		}
	}
	confirm(p, out)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

type fireFunc func(c Code, format string, args ...any)

// unsignedInputs names, per rule, the values it reads that neither of
// Ottu's signature schemes covers (docs/ottu-webhooks.md §3.6): whoever
// holds one signed body could change them. The finding's detail says so.
var unsignedInputs = map[Code]string{
	OperationAmountMismatch: "txn.amount",
	CurrencyMismatch:        "txn.currency_code",
	OverCapture:             "txn.amount, txn.state",
	OverRefund:              "txn.amount, txn.state",
	VoidAfterCapture:        "operation, txn.state",
	VoidAmountMismatch:      "txn.amount, txn.state",
	OperationOnInvalidState: "operation, txn.state",
	ParentTotalsMismatch:    "refunded_amount, voided_amount, txn.amount",
	MissingOperation:        "transactions[]",
	PGSideOperation:         "source",
	ConflictingDuplicate:    "operation, txn",
	StaleAuthorization:      "timestamp_utc",
	StuckRefund:             "timestamp_utc, txn.state",
	SandboxInLive:           "is_sandbox",
}

var rules = []func(p *Parent, cfg Config, now time.Time, fire fireFunc){
	operationAmountMismatch, currencyMismatch, afterGrace(overCapture), afterGrace(overRefund), voidAfterCapture,
	afterGrace(voidAmountMismatch), afterGrace(operationOnInvalidState), parentTotalsMismatch, missingOperation,
	pgSideOperation, conflictingDuplicate, staleAuthorization, stuckRefund,
	orderAmountMismatch, sandboxInLive, missingPaymentWebhook,
}

// afterGrace makes a rule that judges operations by the parent's state see
// only the operations that arrived at least RECON_GRACE ago: Ottu does not
// order its deliveries, so the parent's paid or authorized webhook may still
// be on its way. A finding a few minutes late beats a false critical alert.
func afterGrace(rule func(*Parent, Config, time.Time, fireFunc)) func(*Parent, Config, time.Time, fireFunc) {
	return func(p *Parent, cfg Config, now time.Time, fire fireFunc) {
		n := 0
		for i := range p.Operations {
			if now.Sub(p.Operations[i].FirstReceived) >= cfg.Grace {
				n++
			}
		}
		if n == len(p.Operations) { // the common case: nothing to copy
			rule(p, cfg, now, fire)
			return
		}
		settled := *p
		settled.Operations = make([]Operation, 0, n)
		for _, o := range p.Operations {
			if now.Sub(o.FirstReceived) >= cfg.Grace {
				settled.Operations = append(settled.Operations, o)
			}
		}
		rule(&settled, cfg, now, fire)
	}
}

// Classification of an operation at its latest state. Sums follow docs/product.md:
// captures are txn.state paid, refunds txn.state refunded, voids txn.state
// voided. "Has a capture/void/refund" also counts an operation whose operation
// field says so, whatever its state.
func isCapture(o *Operation) bool  { return o.TxnState == events.TxnPaid }
func isRefunded(o *Operation) bool { return o.TxnState == events.TxnRefunded }
func isVoided(o *Operation) bool   { return o.TxnState == events.TxnVoided }
func hasKind(o *Operation, kind string) bool {
	return o.Operation == kind
}

// ops returns the operations pred keeps (pointers: an Operation is large,
// and every rule asks).
func (p *Parent) ops(pred func(*Operation) bool) []*Operation {
	var out []*Operation
	for i := range p.Operations {
		if o := &p.Operations[i]; pred(o) {
			if out == nil {
				out = make([]*Operation, 0, len(p.Operations)-i)
			}
			out = append(out, o)
		}
	}
	return out
}

func all(*Operation) bool { return true }

func txnSum(ops []*Operation) decimal.Decimal {
	total := decimal.Zero
	for _, o := range ops {
		total = total.Add(sum(o.TxnAmount))
	}
	return total
}

func refs(ops []*Operation) string {
	names := make([]string, len(ops))
	for i, o := range ops {
		names[i] = o.ReferenceNumber
	}
	return strings.Join(names, ", ")
}

func money(d decimal.Decimal, currency string) string {
	return events.Amount{Decimal: d, Valid: true}.Format(currency)
}

func amountText(a events.Amount, currency string) string { return a.Format(currency) }

// OPERATION_AMOUNT_MISMATCH: an operation's amount differs from its txn.amount.
func operationAmountMismatch(p *Parent, _ Config, _ time.Time, fire fireFunc) {
	var bad []string
	for _, o := range p.Operations {
		if o.Amount.Valid && o.TxnAmount.Valid && !o.Amount.Equal(o.TxnAmount) {
			bad = append(bad, fmt.Sprintf("%s asked %s, txn moved %s", o.ReferenceNumber,
				amountText(o.Amount, o.TxnCurrency), amountText(o.TxnAmount, o.TxnCurrency)))
		}
	}
	if len(bad) > 0 {
		fire(OperationAmountMismatch, "operation amount differs from txn.amount: %s", strings.Join(bad, "; "))
	}
}

// CURRENCY_MISMATCH: an operation's txn.currency_code differs from its parent's.
func currencyMismatch(p *Parent, _ Config, _ time.Time, fire fireFunc) {
	var bad []string
	for _, o := range p.Operations {
		if o.TxnCurrency != "" && p.Currency != "" && !strings.EqualFold(o.TxnCurrency, p.Currency) {
			bad = append(bad, o.ReferenceNumber+" in "+o.TxnCurrency)
		}
	}
	if len(bad) > 0 {
		fire(CurrencyMismatch, "parent is in %s; operations in another currency: %s", p.Currency, strings.Join(bad, ", "))
	}
}

// OVER_CAPTURE: captures of a parent that reached authorized sum to more than its amount.
func overCapture(p *Parent, _ Config, _ time.Time, fire fireFunc) {
	if !p.Reached[events.StateAuthorized] || !p.Amount.Valid {
		return
	}
	captures := p.ops(isCapture)
	if total := txnSum(captures); total.GreaterThan(p.Amount.Decimal) {
		fire(OverCapture, "captures sum to %s, more than the authorized %s (%s)",
			money(total, p.Currency), amountText(p.Amount, p.Currency), refs(captures))
	}
}

// OVER_REFUND: refunds sum to more than was collected: the captured sum when
// the parent has captures, else the parent's amount when it reached paid. With
// neither, nothing was collected and OPERATION_ON_INVALID_STATE fires instead.
func overRefund(p *Parent, _ Config, _ time.Time, fire fireFunc) {
	refunds := p.ops(isRefunded)
	if len(refunds) == 0 {
		return
	}
	var collected decimal.Decimal
	var what string
	switch captures := p.ops(isCapture); {
	case len(captures) > 0:
		collected, what = txnSum(captures), "captured"
	case p.Reached[events.StatePaid] && p.Amount.Valid:
		collected, what = p.Amount.Decimal, "paid"
	default:
		return
	}
	if total := txnSum(refunds); total.GreaterThan(collected) {
		fire(OverRefund, "refunds sum to %s, more than the %s %s (%s)",
			money(total, p.Currency), what, money(collected, p.Currency), refs(refunds))
	}
}

// VOID_AFTER_CAPTURE: a parent has both a void and a capture (§4.2: a void is
// impossible after even a partial capture).
func voidAfterCapture(p *Parent, _ Config, _ time.Time, fire fireFunc) {
	voids := p.ops(func(o *Operation) bool { return isVoided(o) || hasKind(o, events.OpVoid) })
	captures := p.ops(func(o *Operation) bool { return isCapture(o) || hasKind(o, events.OpCapture) })
	if len(voids) > 0 && len(captures) > 0 {
		fire(VoidAfterCapture, "voided (%s) and captured (%s)", refs(voids), refs(captures))
	}
}

// VOID_AMOUNT_MISMATCH: a void's amount differs from its parent's amount (§4.2:
// a void always covers the full amount).
func voidAmountMismatch(p *Parent, _ Config, _ time.Time, fire fireFunc) {
	if !p.Amount.Valid {
		return
	}
	var bad []string
	for _, o := range p.ops(isVoided) {
		if o.TxnAmount.Valid && !o.TxnAmount.Equal(p.Amount) {
			bad = append(bad, o.ReferenceNumber+" voided "+amountText(o.TxnAmount, p.Currency))
		}
	}
	if len(bad) > 0 {
		fire(VoidAmountMismatch, "parent amount is %s: %s", amountText(p.Amount, p.Currency), strings.Join(bad, "; "))
	}
}

// OPERATION_ON_INVALID_STATE: a capture or void on a parent that never reached
// authorized, or a refund on a parent that never reached paid and has no capture.
func operationOnInvalidState(p *Parent, _ Config, _ time.Time, fire fireFunc) {
	var bad []string
	if !p.Reached[events.StateAuthorized] {
		for _, o := range p.ops(all) {
			if isCapture(o) || isVoided(o) || hasKind(o, events.OpCapture) || hasKind(o, events.OpVoid) {
				bad = append(bad, fmt.Sprintf("%s (%s) but the parent was never authorized", o.ReferenceNumber, o.Operation))
			}
		}
	}
	if !p.Reached[events.StatePaid] && len(p.ops(isCapture)) == 0 {
		for _, o := range p.ops(all) {
			if hasKind(o, events.OpRefund) {
				bad = append(bad, fmt.Sprintf("%s (refund) but the parent was never paid nor captured", o.ReferenceNumber))
			}
		}
	}
	if len(bad) > 0 {
		fire(OperationOnInvalidState, "parent states reached: %s; %s", reachedText(p), strings.Join(bad, "; "))
	}
}

func reachedText(p *Parent) string {
	states := make([]string, 0, len(p.Reached))
	for s := range p.Reached {
		states = append(states, s)
	}
	sort.Strings(states)
	return strings.Join(states, ", ")
}

// PARENT_TOTALS_MISMATCH: the latest payment webhook reports refunded_amount or
// voided_amount different from the sum of the refund or void operations. The
// operations may still be on their way: it fires only once the latest payment
// webhook is older than RECON_GRACE.
func parentTotalsMismatch(p *Parent, cfg Config, now time.Time, fire fireFunc) {
	if now.Sub(p.LastPaymentAt) < cfg.Grace {
		return
	}
	var bad []string
	if p.RefundedAmount.Valid {
		if total := txnSum(p.ops(isRefunded)); !total.Equal(p.RefundedAmount.Decimal) {
			bad = append(bad, fmt.Sprintf("refunded_amount %s, refund operations sum to %s",
				amountText(p.RefundedAmount, p.Currency), money(total, p.Currency)))
		}
	}
	if p.VoidedAmount.Valid {
		if total := txnSum(p.ops(isVoided)); !total.Equal(p.VoidedAmount.Decimal) {
			bad = append(bad, fmt.Sprintf("voided_amount %s, void operations sum to %s",
				amountText(p.VoidedAmount, p.Currency), money(total, p.Currency)))
		}
	}
	if len(bad) > 0 {
		fire(ParentTotalsMismatch, "%s", strings.Join(bad, "; "))
	}
}

// MISSING_OPERATION: transactions[] lists a child for which no operation
// webhook arrived within RECON_GRACE of the child first being listed.
func missingOperation(p *Parent, cfg Config, now time.Time, fire fireFunc) {
	have := map[string]bool{}
	for _, o := range p.Operations {
		have[o.ChildSessionID] = true
	}
	var missing []string
	for child, listedAt := range p.Listed {
		if child != "" && !have[child] && now.Sub(listedAt) >= cfg.Grace {
			missing = append(missing, child)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		fire(MissingOperation, "transactions[] lists %d child(ren) with no operation webhook after %s: %s",
			len(missing), cfg.Grace, strings.Join(missing, ", "))
	}
}

// ORPHAN_OPERATION: operations whose parent has had no payment webhook within
// RECON_GRACE of the first operation arriving.
func orphan(p *Parent, cfg Config, now time.Time, fire fireFunc) {
	if p.HasPayment || len(p.Operations) == 0 {
		return
	}
	first := p.Operations[0].FirstReceived
	for _, o := range p.Operations[1:] {
		if o.FirstReceived.Before(first) {
			first = o.FirstReceived
		}
	}
	if now.Sub(first) >= cfg.Grace {
		fire(OrphanOperation, "no payment webhook for this parent %s after its first operation (%s)",
			now.Sub(first).Round(time.Second), refs(p.ops(all)))
	}
}

// PG_SIDE_OPERATION: an operation done on the gateway's dashboard: any of
// its deliveries said source pg. Evidence only grows: a later delivery saying
// otherwise (source is signed by no scheme) never resolves it.
func pgSideOperation(p *Parent, _ Config, _ time.Time, fire fireFunc) {
	var pg []string
	for _, o := range p.Operations {
		if o.Source == "pg" || slices.Contains(o.Seen.Sources, "pg") {
			pg = append(pg, fmt.Sprintf("%s %s %s", o.ReferenceNumber, o.Operation, amountText(o.TxnAmount, o.TxnCurrency)))
		}
	}
	if len(pg) > 0 {
		fire(PGSideOperation, "done on the gateway's dashboard, outside Ottu: %s", strings.Join(pg, "; "))
	}
}

// STALE_AUTHORIZATION: authorized, with no capture or void, for longer than
// RECON_STALE_AUTHORIZATION.
func staleAuthorization(p *Parent, cfg Config, now time.Time, fire fireFunc) {
	if p.State != events.StateAuthorized || p.AuthorizedAt.IsZero() {
		return
	}
	for i := range p.Operations {
		if o := &p.Operations[i]; isCapture(o) || isVoided(o) || hasKind(o, events.OpCapture) || hasKind(o, events.OpVoid) {
			return
		}
	}
	if age := now.Sub(p.AuthorizedAt); age > cfg.StaleAuthorization {
		fire(StaleAuthorization, "authorized %s ago (%s) with no capture or void; %s held",
			age.Round(time.Minute), p.AuthorizedAt.Format(time.RFC3339), amountText(p.Amount, p.Currency))
	}
}

// STUCK_REFUND: a refund has stayed refund_queued for longer than RECON_STUCK_REFUND.
func stuckRefund(p *Parent, cfg Config, now time.Time, fire fireFunc) {
	var stuck []string
	for _, o := range p.Operations {
		if !events.IsRefundQueued(o.TxnState) {
			continue
		}
		since := o.QueuedSince
		if since.IsZero() {
			since = o.FirstReceived
		}
		if age := now.Sub(since); age > cfg.StuckRefund {
			stuck = append(stuck, fmt.Sprintf("%s (%s) queued for %s", o.ReferenceNumber,
				amountText(o.TxnAmount, o.TxnCurrency), age.Round(time.Minute)))
		}
	}
	if len(stuck) > 0 {
		fire(StuckRefund, "refund still queued: %s", strings.Join(stuck, "; "))
	}
}

// ORDER_AMOUNT_MISMATCH: a paid or authorized parent's amount or currency
// differs from its merchant_orders row.
func orderAmountMismatch(p *Parent, _ Config, _ time.Time, fire fireFunc) {
	if p.Order == nil || !(p.Reached[events.StatePaid] || p.Reached[events.StateAuthorized]) {
		return
	}
	if !p.Amount.Equal(p.Order.Amount) || !strings.EqualFold(p.Currency, p.Order.Currency) {
		fire(OrderAmountMismatch, "order %s expects %s, Ottu %s %s", p.OrderNo,
			amountText(p.Order.Amount, p.Order.Currency), p.State, amountText(p.Amount, p.Currency))
	}
}
