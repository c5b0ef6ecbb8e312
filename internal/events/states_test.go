package events_test

import (
	"testing"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// TestStateOrder pins the ranks the store writes (state_rank): a change
// re-orders every stored delivery that shares a timestamp.
func TestStateOrder(t *testing.T) {
	type order struct {
		terminal bool
		rank     uint8
	}
	payments := map[string]order{"refunded": {true, 8}, "paid": {true, 7}, "authorized": {true, 6}, "cod": {true, 5},
		"failed": {true, 4}, "canceled": {true, 3}, "expired": {true, 2}, "invalided": {true, 1},
		"attempted": {false, 3}, "pending": {false, 2}, "created": {false, 1}, "": {false, 0}, "refund_queued": {false, 0}}
	for state, want := range payments {
		if terminal, rank := events.PaymentStateOrder(state); (order{terminal, rank}) != want {
			t.Errorf("payment %q: got %v %d, want %v", state, terminal, rank, want)
		}
	}
	txns := map[string]order{"refunded": {true, 4}, "refund_rejected": {true, 3}, "voided": {true, 2}, "paid": {true, 1},
		"refund_queued": {false, 1}, "refund-queued": {false, 1}, "pending": {false, 0}}
	for state, want := range txns {
		if terminal, rank := events.TxnStateOrder(state); (order{terminal, rank}) != want {
			t.Errorf("txn %q: got %v %d, want %v", state, terminal, rank, want)
		}
	}
}
