package ledger_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

var cfg = ledger.Config{Grace: 10 * time.Minute, StaleAuthorization: 168 * time.Hour, StuckRefund: 48 * time.Hour, Live: true}

// parent builds a parent with a payment webhook received an hour ago.
func parent(state, amount string, reached ...string) *ledger.Parent {
	p := &ledger.Parent{SessionID: "s1", HasPayment: true, OrderNo: "o1", State: state, Amount: amt(amount),
		Currency: "KWD", Reached: map[string]bool{state: true}, LastPaymentAt: now.Add(-time.Hour)}
	for _, r := range reached {
		p.Reached[r] = true
	}
	if p.Reached[events.StateAuthorized] {
		p.AuthorizedAt = now.Add(-time.Hour)
	}
	return p
}

// op builds an operation at its latest state, delivered once, an hour ago.
func op(ref, kind, state, amount string) ledger.Operation {
	o := ledger.Operation{ReferenceNumber: ref, ChildSessionID: "c-" + ref, Operation: kind, Source: "input",
		TxnState: state, TxnCurrency: "KWD", Amount: amt(amount), TxnAmount: amt(amount), FirstReceived: now.Add(-time.Hour)}
	return o
}

// with adds ops to p, each having been delivered (at least) as it stands.
func with(p *ledger.Parent, ops ...ledger.Operation) *ledger.Parent {
	for _, o := range ops {
		o.Seen.Add(ledger.Variant{Operation: o.Operation, Amount: o.Amount, TxnAmount: o.TxnAmount, Currency: o.TxnCurrency,
			TxnState: o.TxnState, Source: o.Source, Child: o.ChildSessionID})
		p.Operations = append(p.Operations, o)
	}
	return p
}

func codes(fs []ledger.Finding) []ledger.Code {
	out := []ledger.Code{}
	for _, f := range fs {
		out = append(out, f.Code)
	}
	return out
}

func TestEvaluate(t *testing.T) {
	type C = []ledger.Code
	tests := []struct {
		name string
		p    *ledger.Parent
		cfg  func(*ledger.Config)
		want C
	}{
		// Clean parents.
		{"clean purchase", parent("paid", "25.500"), nil, C{}},
		{"clean purchase with partial refunds", with(parent("paid", "25.500"), op("r1", "refund", "refunded", "5.000"), op("r2", "refund", "refunded", "20.500")), nil, C{}},
		{"clean authorization, partial captures", with(parent("authorized", "40"), op("c1", "capture", "paid", "10"), op("c2", "capture", "paid", "30.000")), nil, C{}},
		{"clean void", with(parent("authorized", "40.000"), op("v1", "void", "voided", "40")), nil, C{}},
		{"refund after capture on an authorization", with(parent("authorized", "40"), op("c1", "capture", "paid", "30"), op("r1", "refund", "refunded", "30.00")), nil, C{}},
		{"failed payment later paid, then refunded", with(parent("paid", "10", "failed"), op("r1", "refund", "refunded", "10")), nil, C{}},
		{"queued refund that later completed", func() *ledger.Parent {
			o := op("r1", "refund", "refunded", "5")
			o.Seen.Add(ledger.Variant{Operation: "refund", Amount: amt("5.000"), TxnAmount: amt("5.0"), Currency: "KWD", TxnState: "refund_queued", Source: "input", Child: "c-r1"})
			return with(parent("paid", "25.5"), o)
		}(), nil, C{}},
		{"identical duplicate", func() *ledger.Parent {
			o := op("r1", "refund", "refunded", "5")
			o.Seen.Add(ledger.Variant{Operation: "refund", Amount: amt("5"), TxnAmount: amt("5"), Currency: "KWD", TxnState: "refunded", Source: "input", Child: "c-r1"})
			return with(parent("paid", "25.5"), o)
		}(), nil, C{}},
		{"equal amounts written differently", func() *ledger.Parent {
			p := with(parent("paid", "25.5"), op("r1", "refund", "refunded", "5.000"))
			p.Operations[0].Amount = amt("5")
			p.RefundedAmount = amt("5.00")
			p.Order = &ledger.Order{Amount: amt("25.500"), Currency: "kwd"}
			return p
		}(), nil, C{}},
		{"sandbox allowed in sandbox", func() *ledger.Parent { p := parent("paid", "1"); p.Sandbox = true; return p }(),
			func(c *ledger.Config) { c.Live = false }, C{}},

		// Each rule firing.
		{"OPERATION_AMOUNT_MISMATCH", func() *ledger.Parent {
			o := op("r1", "refund", "refunded", "5")
			o.TxnAmount = amt("4.999")
			return with(parent("paid", "25.5"), o)
		}(), nil, C{ledger.OperationAmountMismatch}},
		{"CURRENCY_MISMATCH", func() *ledger.Parent {
			o := op("r1", "refund", "refunded", "5")
			o.TxnCurrency = "USD"
			return with(parent("paid", "25.5"), o)
		}(), nil, C{ledger.CurrencyMismatch}},
		{"OVER_CAPTURE", with(parent("authorized", "40"), op("c1", "capture", "paid", "30"), op("c2", "capture", "paid", "10.001")), nil,
			C{ledger.OverCapture}},
		{"OVER_REFUND of a purchase", with(parent("paid", "25.5"), op("r1", "refund", "refunded", "20"), op("r2", "refund", "refunded", "5.501")), nil,
			C{ledger.OverRefund}},
		{"OVER_REFUND beyond the captured sum", with(parent("authorized", "40"), op("c1", "capture", "paid", "10"), op("r1", "refund", "refunded", "10.5")), nil,
			C{ledger.OverRefund}},
		{"rejected refunds do not count", with(parent("paid", "10"), op("r1", "refund", "refund_rejected", "10"), op("r2", "refund", "refunded", "10")), nil,
			C{}},
		{"VOID_AFTER_CAPTURE", with(parent("authorized", "40"), op("c1", "capture", "paid", "10"), op("v1", "void", "voided", "40")), nil,
			C{ledger.VoidAfterCapture}},
		{"VOID_AMOUNT_MISMATCH", with(parent("authorized", "40"), op("v1", "void", "voided", "30")), nil, C{ledger.VoidAmountMismatch}},
		{"OPERATION_ON_INVALID_STATE: capture on a purchase", with(parent("paid", "10"), op("c1", "capture", "paid", "10")), nil,
			C{ledger.OperationOnInvalidState}},
		{"OPERATION_ON_INVALID_STATE: refund on a failed parent", with(parent("failed", "10"), op("r1", "refund", "refunded", "5")), nil,
			C{ledger.OperationOnInvalidState}},
		{"OPERATION_ON_INVALID_STATE: void on a pending parent", with(parent("pending", "10"), op("v1", "void", "voided", "10")), nil,
			C{ledger.OperationOnInvalidState}},
		{"PARENT_TOTALS_MISMATCH", func() *ledger.Parent {
			p := with(parent("paid", "25.5"), op("r1", "refund", "refunded", "5"))
			p.RefundedAmount = amt("10")
			return p
		}(), nil, C{ledger.ParentTotalsMismatch}},
		{"PARENT_TOTALS_MISMATCH waits for the grace", func() *ledger.Parent {
			p := with(parent("paid", "25.5"), op("r1", "refund", "refunded", "5"))
			p.RefundedAmount, p.LastPaymentAt = amt("10"), now.Add(-time.Minute)
			return p
		}(), nil, C{}},
		{"PARENT_TOTALS_MISMATCH on voided_amount", func() *ledger.Parent {
			p := parent("authorized", "40")
			p.VoidedAmount = amt("40")
			return p
		}(), nil, C{ledger.ParentTotalsMismatch}},
		{"MISSING_OPERATION", func() *ledger.Parent {
			p := with(parent("paid", "25.5"), op("r1", "refund", "refunded", "5"))
			p.Listed = map[string]time.Time{"c-r1": now.Add(-time.Hour), "c-lost": now.Add(-time.Hour)}
			return p
		}(), nil, C{ledger.MissingOperation}},
		{"MISSING_OPERATION waits for the grace", func() *ledger.Parent {
			p := parent("paid", "25.5")
			p.Listed = map[string]time.Time{"c-late": now.Add(-5 * time.Minute)}
			return p
		}(), nil, C{}},
		{"ORPHAN_OPERATION", with(&ledger.Parent{SessionID: "s1"}, op("r1", "refund", "refunded", "5")), nil, C{ledger.OrphanOperation}},
		{"orphan within the grace", func() *ledger.Parent {
			o := op("r1", "refund", "refunded", "5")
			o.FirstReceived = now.Add(-time.Minute)
			return with(&ledger.Parent{SessionID: "s1"}, o)
		}(), nil, C{}},
		{"only ORPHAN_OPERATION before the payment webhook", func() *ledger.Parent {
			o := op("r1", "capture", "paid", "5")
			o.Source, o.TxnAmount = "pg", amt("6")
			return with(&ledger.Parent{SessionID: "s1", Sandbox: true}, o)
		}(), nil, C{ledger.OrphanOperation}},
		{"PG_SIDE_OPERATION", func() *ledger.Parent {
			o := op("v1", "void", "voided", "40")
			o.Source = "pg"
			return with(parent("authorized", "40"), o)
		}(), nil, C{ledger.PGSideOperation}},
		{"CONFLICTING_DUPLICATE on amount", func() *ledger.Parent {
			o := op("r1", "refund", "refunded", "5")
			o.Seen.Add(ledger.Variant{Operation: "refund", Amount: amt("6"), TxnAmount: amt("5"), Currency: "KWD", TxnState: "refunded", Source: "input", Child: "c-r1"})
			return with(parent("paid", "25.5"), o)
		}(), nil, C{ledger.ConflictingDuplicate}},
		{"CONFLICTING_DUPLICATE on state", func() *ledger.Parent {
			o := op("r1", "refund", "refunded", "5")
			o.Seen.Add(ledger.Variant{Operation: "refund", Amount: amt("5"), TxnAmount: amt("5"), Currency: "KWD", TxnState: "refund_rejected", Source: "input", Child: "c-r1"})
			return with(parent("paid", "25.5"), o)
		}(), nil, C{ledger.ConflictingDuplicate}},
		{"STALE_AUTHORIZATION", func() *ledger.Parent {
			p := parent("authorized", "40")
			p.AuthorizedAt = now.Add(-169 * time.Hour)
			return p
		}(), nil, C{ledger.StaleAuthorization}},
		{"stale but captured", func() *ledger.Parent {
			p := with(parent("authorized", "40"), op("c1", "capture", "paid", "40"))
			p.AuthorizedAt = now.Add(-300 * time.Hour)
			return p
		}(), nil, C{}},
		{"STUCK_REFUND", func() *ledger.Parent {
			o := op("r1", "refund", "refund_queued", "5")
			o.QueuedSince = now.Add(-49 * time.Hour)
			return with(parent("paid", "25.5"), o)
		}(), nil, C{ledger.StuckRefund}},
		{"queued, not yet stuck", func() *ledger.Parent {
			o := op("r1", "refund", "refund_queued", "5")
			o.QueuedSince = now.Add(-47 * time.Hour)
			return with(parent("paid", "25.5"), o)
		}(), nil, C{}},
		{"ORDER_AMOUNT_MISMATCH", func() *ledger.Parent {
			p := parent("paid", "25.5")
			p.Order = &ledger.Order{Amount: amt("25.000"), Currency: "KWD"}
			return p
		}(), nil, C{ledger.OrderAmountMismatch}},
		{"ORDER_AMOUNT_MISMATCH on currency", func() *ledger.Parent {
			p := parent("authorized", "25.5")
			p.Order = &ledger.Order{Amount: amt("25.5"), Currency: "BHD"}
			return p
		}(), nil, C{ledger.OrderAmountMismatch}},
		{"order check skips an unpaid parent", func() *ledger.Parent {
			p := parent("failed", "25.5")
			p.Order = &ledger.Order{Amount: amt("1"), Currency: "KWD"}
			return p
		}(), nil, C{}},
		{"SANDBOX_IN_LIVE", func() *ledger.Parent { p := parent("paid", "1"); p.Sandbox = true; return p }(), nil,
			C{ledger.SandboxInLive}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			if tt.cfg != nil {
				tt.cfg(&c)
			}
			got := ledger.Evaluate(tt.p, c, now)
			if !reflect.DeepEqual(codes(got), tt.want) {
				t.Fatalf("got %v, want %v\n%s", codes(got), tt.want, details(got))
			}
			for _, f := range got {
				if f.SessionID != "s1" || f.Detail == "" || f.Severity != ledger.SeverityOf(f.Code) {
					t.Fatalf("malformed finding %+v", f)
				}
			}
		})
	}
}

func details(fs []ledger.Finding) string {
	s := ""
	for _, f := range fs {
		s += fmt.Sprintf("  %s: %s\n", f.Code, f.Detail)
	}
	return s
}

func TestCodes(t *testing.T) {
	if len(ledger.Codes) != 19 {
		t.Fatalf("got %d codes, want the 19 of docs/product.md", len(ledger.Codes))
	}
	seen := map[ledger.Code]bool{}
	for _, c := range ledger.Codes {
		if seen[c.Code] {
			t.Fatalf("duplicate code %s", c.Code)
		}
		seen[c.Code] = true
		switch c.Severity {
		case ledger.Critical, ledger.Warning, ledger.Info:
		default:
			t.Fatalf("%s: severity %q", c.Code, c.Severity)
		}
	}
}

// amt is the amount s, a valid constant of the test.
func amt(s string) events.Amount { a, _ := events.ParseAmount(s); return a }
