package ledger_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// TestMissingPaymentWebhook: Ottu's signed record of a state in which money
// moved, that no webhook delivered, raises MISSING_PAYMENT_WEBHOOK, and a
// recovered payment is reconciled like any other (its order's amount); a
// record of any other state raises nothing; the webhook's arrival resolves
// it.
func TestMissingPaymentWebhook(t *testing.T) {
	at := now.Add(-95 * time.Minute)
	record := func(state, amount string) *ledger.PaymentRow {
		r := payRow("s1", state, at, now.Add(-time.Hour), 9)
		r.Amount, r.Recorded = amt(amount), true
		return r
	}
	webhook := func(state string) *ledger.PaymentRow { return payRow("s1", state, at, at, 1) }
	tests := []struct {
		name   string
		rows   []*ledger.PaymentRow
		order  string // the merchant order's amount, when there is one
		want   []ledger.Code
		detail string
	}{
		{"an order never heard of, paid", []*ledger.PaymentRow{record("paid", "10.000")}, "10.000",
			[]ledger.Code{ledger.MissingPaymentWebhook}, "payment of order o-s1 paid 10.000 KWD"},
		{"paid for more than the order", []*ledger.PaymentRow{record("paid", "12.500")}, "10.000",
			[]ledger.Code{ledger.MissingPaymentWebhook, ledger.OrderAmountMismatch}, "no webhook of it ever arrived"},
		{"a pending parent Ottu holds as paid", []*ledger.PaymentRow{webhook("pending"), record("paid", "10.000")}, "",
			[]ledger.Code{ledger.MissingPaymentWebhook}, "its webhooks said only pending"},
		{"authorized, never said", []*ledger.PaymentRow{record("authorized", "10.000")}, "",
			[]ledger.Code{ledger.MissingPaymentWebhook}, "authorized 10.000 KWD"},
		{"the paid webhook arrived after", []*ledger.PaymentRow{record("paid", "10.000"), webhook("paid")}, "", nil, ""},
		{"Ottu holds it as pending", []*ledger.PaymentRow{record("pending", "10.000")}, "", nil, ""},
		{"Ottu holds it as failed", []*ledger.PaymentRow{webhook("pending"), record("failed", "10.000")}, "", nil, ""},
		{"expired, late", []*ledger.PaymentRow{record("expired", "10.000")}, "", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ledger.NewFold(1)
			for _, r := range tt.rows {
				f.AddPayment(r)
			}
			if tt.order != "" {
				f.AddOrder(ledger.OrderRow{OrderNo: "o-s1", Amount: amt(tt.order), Currency: "KWD"})
			}
			ps := f.Parents()
			if len(ps) != 1 || !ps[0].HasPayment {
				t.Fatalf("parents %+v: a recovered record counts as the payment webhook", ps)
			}
			got := ledger.Evaluate(ps[0], ledger.Config{Grace: 10 * time.Minute, StaleAuthorization: 168 * time.Hour}, now)
			if !slices.Equal(codes(got), tt.want) {
				t.Fatalf("got %v, want %v\n%s", codes(got), tt.want, details(got))
			}
			for _, f := range got {
				if f.Code == ledger.MissingPaymentWebhook && !strings.Contains(f.Detail, tt.detail) {
					t.Errorf("detail %q, want it to say %q", f.Detail, tt.detail)
				}
			}
		})
	}
}

// TestShare: the confirmations of findings keep half of a pass's questions
// and the completeness sweep the other half; what one leaves the other
// takes; a parent is asked once.
func TestShare(t *testing.T) {
	sweep := func(n int) []ledger.Question {
		var out []ledger.Question
		for i := range n {
			out = append(out, ledger.Question{OrderNo: string(rune('a' + i)), Since: now})
		}
		return out
	}
	tests := []struct {
		name          string
		confirm       []string
		sweep         []ledger.Question
		limit         int
		wantConfirmed int
		wantSwept     int
	}{
		{"both full", []string{"c1", "c2", "c3", "c4"}, sweep(4), 4, 2, 2},
		{"few confirmations", []string{"c1"}, sweep(5), 4, 1, 3},
		{"no sweep", []string{"c1", "c2", "c3", "c4", "c5"}, nil, 4, 4, 0},
		{"an odd limit", []string{"c1", "c2", "c3"}, sweep(3), 3, 1, 2},
		{"the same parent twice", []string{"s1"}, []ledger.Question{{SessionID: "s1", Since: now}, {OrderNo: "o", Since: now}}, 4, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ledger.Share(tt.confirm, tt.sweep, tt.limit)
			confirmed, swept := 0, 0
			for _, q := range got {
				if q.Since.IsZero() {
					confirmed++
				} else {
					swept++
				}
			}
			if confirmed != tt.wantConfirmed || swept != tt.wantSwept {
				t.Fatalf("got %d confirmations and %d sweep questions (%+v), want %d and %d", confirmed, swept, got,
					tt.wantConfirmed, tt.wantSwept)
			}
		})
	}
}
