package ledger_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// randomRows draws deliveries of a few parents that disagree often: states,
// amounts (some absent, some at another scale, the largest the store
// holds), children, sandbox flags, times and ranks that tie.
func randomRows(rnd *rand.Rand, n int) (pays []ledger.PaymentRow, ops []ledger.OperationRow) {
	pick := func(xs ...string) string { return xs[rnd.IntN(len(xs))] }
	amount := func() events.Amount {
		switch rnd.IntN(6) {
		case 0:
			return events.Amount{}
		case 1:
			return events.NewAmount("999999999999999999999999999999.99999999")
		case 2:
			return events.Amount{Decimal: decimal.New(-5, -1), Valid: true} // the codec's sign
		}
		return events.NewAmount(pick("1.000", "1", "25.50000000", "0.00000001"))
	}
	base := uint32(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).Unix())
	rank := func() ledger.Rank {
		ts := base + uint32(rnd.IntN(4))*60
		if rnd.IntN(5) == 0 {
			ts = 0
		}
		return ledger.NewRank(ts, base+uint32(rnd.IntN(4))*60, rnd.IntN(2) == 0, uint8(rnd.IntN(3)), uint64(rnd.IntN(3)))
	}
	for range n {
		session := pick("s1", "s2", "s3")
		if rnd.IntN(2) == 0 {
			var children []string
			for range rnd.IntN(3) {
				children = append(children, pick("c1", "c2", "c3"))
			}
			pays = append(pays, ledger.PaymentRow{SessionID: session, OrderNo: pick("", "o1", "o|2"), State: pick("pending", "authorized", "paid", "failed"),
				Amount: amount(), Currency: pick("KWD", "BHD"), RefundedAmount: amount(), VoidedAmount: amount(), Rank: rank(),
				Children: children, Sandbox: rnd.IntN(4) == 0})
			continue
		}
		ops = append(ops, ledger.OperationRow{SessionID: pick(session, "orphan"), ReferenceNumber: pick("r1", "r2", ""),
			Variant: ledger.Variant{Operation: pick("", "refund", "capture", "void"), Amount: amount(), TxnAmount: amount(),
				Currency: pick("KWD", "OMR"), TxnState: pick("refund_queued", "refund-queued", "refunded", "paid", "voided"),
				Source: pick("input", "pg"), Child: pick("c1", "c2", "")},
			Rank: rank(), Sandbox: rnd.IntN(4) == 0})
	}
	return pays, ops
}

func fold(f *ledger.Fold, pays []ledger.PaymentRow, ops []ledger.OperationRow) []*ledger.Parent {
	for i := range pays {
		f.AddPayment(&pays[i])
	}
	for i := range ops {
		f.AddOperation(&ops[i])
	}
	return f.Parents()
}

// TestSnapshot: a parent's snapshot, restored into another fold that is then
// given the rest of the rows (and again some rows it already holds), folds
// to exactly what one fold of every row gives, over many random histories;
// a snapshot of another version or a damaged one is refused.
func TestSnapshot(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 11))
	for round := range 2000 {
		pays, ops := randomRows(rnd, 1+rnd.IntN(14))
		want := fold(ledger.NewFold(4), pays, ops)

		// The first rows, snapshotted; a second fold restores each parent
		// and gets the other rows, with a few of the first again.
		cp, co := rnd.IntN(len(pays)+1), rnd.IntN(len(ops)+1)
		first := ledger.NewFold(4)
		fold(first, pays[:cp], ops[:co])
		second := ledger.NewFold(4)
		for _, s := range []string{"s1", "s2", "s3", "orphan"} {
			if snap := first.Snapshot(s); snap != nil {
				if err := second.Restore(s, snap); err != nil {
					t.Fatalf("round %d: restore %s: %v", round, s, err)
				}
			}
		}
		again := min(cp, 2)
		got := fold(second, pays[cp-again:], ops[co-min(co, 2):])
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d (%d+%d payments, %d+%d operations):\n got %s\nwant %s", round, cp, len(pays)-cp, co, len(ops)-co,
				dump(got), dump(want))
		}
	}

	f := ledger.NewFold(1)
	fold(f, []ledger.PaymentRow{{SessionID: "s", State: "paid", Amount: events.NewAmount("5.000")}}, nil)
	snap := f.Snapshot("s")
	if f.Snapshot("nobody") != nil {
		t.Error("a snapshot of a parent never folded")
	}
	bumped := append([]byte{snap[0] + 1}, snap[1:]...)
	if err := ledger.NewFold(1).Restore("s", bumped); !errors.Is(err, ledger.ErrSnapshotVersion) {
		t.Errorf("another version: %v", err)
	}
	for cut := 1; cut < len(snap); cut++ {
		if err := ledger.NewFold(1).Restore("s", snap[:cut]); err == nil {
			t.Errorf("a snapshot cut at %d of %d bytes was restored", cut, len(snap))
		}
	}
	if err := ledger.NewFold(1).Restore("s", append(snap, 0)); err == nil {
		t.Error("trailing bytes were restored")
	}
	twice := ledger.NewFold(1)
	if err := twice.Restore("s", snap); err != nil {
		t.Fatal(err)
	}
	if err := twice.Restore("s", snap); err == nil {
		t.Error("a parent restored twice")
	}
}

func dump(ps []*ledger.Parent) string {
	out := ""
	for _, p := range ps {
		out += fmt.Sprintf("\n  %+v", *p)
	}
	return out
}
