package ledger_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// unix is t in the store's Unix seconds.
func unix(t time.Time) uint32 { return uint32(t.Unix()) }

// TestRank: which of two deliveries of one payment or operation is the
// latest, criterion by criterion, in order.
func TestRank(t *testing.T) {
	at := now.Add(-time.Hour)
	base := func() (ts, recv time.Time, terminal bool, rank uint8, seq uint64) { return at, at, false, 1, 10 }
	rank := func(change func(ts, recv *time.Time, terminal *bool, rank *uint8, seq *uint64)) ledger.Rank {
		ts, recv, terminal, r, seq := base()
		if change != nil {
			change(&ts, &recv, &terminal, &r, &seq)
		}
		return ledger.NewRank(unix(ts), unix(recv), terminal, r, seq)
	}
	for _, tc := range []struct {
		name        string
		later, than ledger.Rank
	}{
		{"a timestamp within the skew beats one past it, whatever else",
			rank(func(_, _ *time.Time, _ *bool, _ *uint8, _ *uint64) {}),
			rank(func(ts, _ *time.Time, terminal *bool, r *uint8, seq *uint64) {
				*ts, *terminal, *r, *seq = at.Add(ledger.ClockSkew+time.Second), true, 9, 99
			})},
		{"exactly the skew ahead is still plausible",
			rank(func(ts, _ *time.Time, _ *bool, _ *uint8, _ *uint64) { *ts = at.Add(ledger.ClockSkew) }),
			rank(nil)},
		{"terminal beats a later timestamp",
			rank(func(_, _ *time.Time, terminal *bool, _ *uint8, _ *uint64) { *terminal = true }),
			rank(func(ts, recv *time.Time, _ *bool, _ *uint8, _ *uint64) {
				*ts, *recv = at.Add(time.Minute), at.Add(time.Minute)
			})},
		{"the later timestamp_utc beats a higher state rank",
			rank(func(ts, recv *time.Time, _ *bool, _ *uint8, _ *uint64) {
				*ts, *recv = at.Add(time.Second), at.Add(time.Second)
			}),
			rank(func(_, _ *time.Time, _ *bool, r *uint8, _ *uint64) { *r = 5 })},
		{"the higher state rank beats a later arrival",
			rank(func(_, _ *time.Time, _ *bool, r *uint8, _ *uint64) { *r = 2 }),
			rank(func(_, recv *time.Time, _ *bool, _ *uint8, _ *uint64) { *recv = at.Add(time.Minute) })},
		{"the later arrival beats a later stream sequence",
			rank(func(_, recv *time.Time, _ *bool, _ *uint8, _ *uint64) { *recv = at.Add(time.Second) }),
			rank(func(_, _ *time.Time, _ *bool, _ *uint8, seq *uint64) { *seq = 99 })},
		{"the later stream sequence, all else equal",
			rank(func(_, _ *time.Time, _ *bool, _ *uint8, seq *uint64) { *seq = 11 }),
			rank(nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.later.Compare(tc.than) <= 0 || tc.than.Compare(tc.later) >= 0 {
				t.Fatalf("%+v does not rank after %+v", tc.later, tc.than)
			}
		})
	}
}

func payRow(session, state string, ts, recv time.Time, seq uint64) *ledger.PaymentRow {
	terminal, r := events.PaymentStateOrder(state)
	return &ledger.PaymentRow{SessionID: session, OrderNo: "o-" + session, State: state, Amount: amt("10.000"), Currency: "KWD",
		Rank: ledger.NewRank(unix(ts), unix(recv), terminal, r, seq)}
}

func opRow(session, ref, state, amount string, ts, recv time.Time, seq uint64) *ledger.OperationRow {
	terminal, r := events.TxnStateOrder(state)
	return &ledger.OperationRow{SessionID: session, ReferenceNumber: ref,
		Variant: ledger.Variant{Operation: "refund", Amount: amt(amount), TxnAmount: amt(amount), Currency: "KWD", TxnState: state,
			Source: "input", Child: "c-" + ref},
		Rank: ledger.NewRank(unix(ts), unix(recv), terminal, r, seq)}
}

// TestFold_Payments: a parent from its payment deliveries, in any order:
// its latest state, every state reached, when it was first authorized (the
// stale-authorization anchor), its latest arrival (the grace anchor), when
// each child was first listed, and whether any delivery was a sandbox one.
func TestFold_Payments(t *testing.T) {
	t0 := now.Add(-10 * time.Hour)
	authorized := payRow("s1", "authorized", t0, t0, 1)
	authorized.Children = []string{"c1"}
	authorizedAgain := payRow("s1", "authorized", t0.Add(time.Hour), t0.Add(time.Hour), 2)
	authorizedAgain.Children = []string{"c1", "c2"}
	paid := payRow("s1", "paid", t0.Add(2*time.Hour), t0.Add(2*time.Hour), 3)
	paid.RefundedAmount = amt("1")
	forged := payRow("s1", "refunded", t0.Add(48*time.Hour), t0.Add(3*time.Hour), 4) // timestamp_utc far in its future
	forged.Sandbox = true
	late := payRow("s1", "pending", t0.Add(-time.Hour), t0.Add(5*time.Hour), 5) // arrived last, an old state
	rows := []*ledger.PaymentRow{authorized, authorizedAgain, paid, forged, late}
	for _, order := range [][]int{{0, 1, 2, 3, 4}, {4, 3, 2, 1, 0}, {2, 4, 0, 3, 1}} {
		f := ledger.NewFold(1)
		for _, i := range order {
			f.AddPayment(rows[i])
		}
		ps := f.Parents()
		if len(ps) != 1 {
			t.Fatalf("%d parents", len(ps))
		}
		p := ps[0]
		if p.State != "paid" || !p.RefundedAmount.Equal(amt("1")) || !p.HasPayment {
			t.Fatalf("order %v: latest %q %v, want paid (a forged future refunded never wins)", order, p.State, p.RefundedAmount)
		}
		var reached []string
		for s := range p.Reached {
			reached = append(reached, s)
		}
		slices.Sort(reached)
		if strings.Join(reached, ",") != "authorized,paid,pending,refunded" {
			t.Fatalf("reached %v", reached)
		}
		if !p.AuthorizedAt.Equal(t0) || !p.LastPaymentAt.Equal(t0.Add(5*time.Hour)) {
			t.Fatalf("authorized at %s, last payment at %s", p.AuthorizedAt, p.LastPaymentAt)
		}
		if !p.Listed["c1"].Equal(t0) || !p.Listed["c2"].Equal(t0.Add(time.Hour)) || !p.Sandbox {
			t.Fatalf("listed %v, sandbox %v", p.Listed, p.Sandbox)
		}
	}
}

// TestFold_Operations: each operation at its latest delivery, when it first
// arrived (the grace anchor), since when it has been queued (the stuck-refund
// anchor, in either spelling), every value its deliveries said, in
// reference order under its parent.
func TestFold_Operations(t *testing.T) {
	t0 := now.Add(-10 * time.Hour)
	f := ledger.NewFold(1)
	f.AddPayment(payRow("s1", "paid", t0, t0, 1))
	queued := opRow("s1", "r2", "refund-queued", "5", t0.Add(time.Hour), t0.Add(2*time.Hour), 2)
	queuedAgain := opRow("s1", "r2", "refund_queued", "5", t0.Add(3*time.Hour), t0.Add(3*time.Hour), 3)
	refunded := opRow("s1", "r2", "refunded", "5", t0.Add(4*time.Hour), t0.Add(4*time.Hour), 4)
	other := opRow("s1", "r1", "refunded", "2", t0, t0.Add(time.Hour), 5)
	other.Sandbox = true
	changed := opRow("s1", "r1", "refunded", "3", t0, t0.Add(time.Hour), 6) // the same operation, another amount
	for _, r := range []*ledger.OperationRow{refunded, queuedAgain, other, queued, changed} {
		f.AddOperation(r)
	}
	p := f.Parents()[0]
	if len(p.Operations) != 2 || p.Operations[0].ReferenceNumber != "r1" || p.Operations[1].ReferenceNumber != "r2" {
		t.Fatalf("operations %+v", p.Operations)
	}
	r1, r2 := p.Operations[0], p.Operations[1]
	if r2.TxnState != "refunded" || !r2.FirstReceived.Equal(t0.Add(2*time.Hour)) || !r2.QueuedSince.Equal(t0.Add(time.Hour)) {
		t.Fatalf("r2: state %s, first received %s, queued since %s", r2.TxnState, r2.FirstReceived, r2.QueuedSince)
	}
	if !r1.TxnAmount.Equal(amt("3")) || r1.Seen.TxnAmount.Min.Equal(r1.Seen.TxnAmount.Max) || !r1.Sandbox || !p.Sandbox {
		t.Fatalf("r1: %+v; parent sandbox %v", r1, p.Sandbox)
	}
}

// TestFold_Attached: a merchant order goes to every parent with its order_no,
// an unreadable delivery to its key, Ottu's record to its parent; a record
// whose amount cannot be read leaves the parent unread this time.
func TestFold_Attached(t *testing.T) {
	f := ledger.NewFold(2)
	f.AddPayment(payRow("s1", "paid", now, now, 1))
	f.AddPayment(payRow("s2", "paid", now, now, 2))
	if got := f.OrderNos(); len(got) != 2 {
		t.Fatalf("order_nos %v, want those of both parents", got)
	}
	f.AddOrder(ledger.OrderRow{OrderNo: "o-s1", Amount: amt("9"), Currency: "KWD"})
	f.AddUnreadable("d1", ledger.Unreadable{DeliveryID: "d1", Field: "amount"})
	f.AddInquiry(ledger.InquiryRow{SessionID: "s1", AskedAt: now, Found: true, State: "paid", Amount: "10.000", Currency: "KWD",
		ChildSessionIDs: []string{"c1"}, ChildStates: []string{"refunded"}, ChildAmounts: []string{"5.000"}, ChildCurrencies: []string{"KWD"}})
	f.AddInquiry(ledger.InquiryRow{SessionID: "s2", AskedAt: now, Found: true, Amount: "ten"})
	ps := f.Parents()
	if len(ps) != 3 || ps[0].SessionID != "d1" || ps[0].Unreadable[0].Field != "amount" {
		t.Fatalf("parents %+v", ps)
	}
	s1, s2 := ps[1], ps[2]
	if s1.Order == nil || !s1.Order.Amount.Equal(amt("9")) || s2.Order != nil {
		t.Fatalf("orders: %+v %+v", s1.Order, s2.Order)
	}
	if s1.Ottu == nil || !s1.Ottu.Amount.Equal(amt("10")) || s1.Ottu.Children["c1"].Currency != "KWD" || s1.Err != nil {
		t.Fatalf("Ottu's record: %+v %v", s1.Ottu, s1.Err)
	}
	if s2.Err == nil {
		t.Fatal("an unreadable amount in Ottu's record was taken")
	}
}
