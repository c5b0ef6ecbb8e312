package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// sandboxParents returns n parents that each raise SANDBOX_IN_LIVE.
func sandboxParents(n int) []*ledger.Parent {
	var out []*ledger.Parent
	for i := range n {
		p := parent("paid", "1")
		p.SessionID, p.Sandbox = fmt.Sprintf("p%02d", i), true
		out = append(out, p)
	}
	return out
}

// TestReconciler_SlowSingleReceiver: a receiver that takes one finding per
// request (413 for more) and answers slowly, with passes too short to send
// everything: each pass ends in time without error, every finding is
// delivered exactly once over the passes, and no delivered finding is sent
// again (each part is recorded the moment it is delivered).
func TestReconciler_SlowSingleReceiver(t *testing.T) {
	store := &memStore{parents: sandboxParents(12), findings: map[ledger.Key]ledger.Record{}}
	var mu sync.Mutex
	delivered := map[string]int{}
	n := &notifier{notify: func(a ledger.Alert) (bool, error) {
		time.Sleep(40 * time.Millisecond) // the receiver's own slowness, not a wait for a result
		if len(a.Findings) > 1 {
			return false, fmt.Errorf("status 413: %w", ledger.ErrAlertRefused)
		}
		mu.Lock()
		delivered[a.Findings[0].SessionID]++
		mu.Unlock()
		return false, nil
	}}
	clock := now
	r := &ledger.Reconciler{Store: store, Config: cfg, Notifier: n, Now: func() time.Time { return clock },
		Parts: &ledger.AlertParts{}, Reserve: 10 * time.Millisecond}
	passes := 0
	for ; passes < 30 && len(delivered) < 12; passes++ {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		rep, err := r.Run(ctx)
		cancel()
		if err != nil {
			t.Fatalf("pass %d failed: %v (%+v)", passes+1, err, rep)
		}
		if took := time.Since(start); took > 400*time.Millisecond {
			t.Fatalf("pass %d took %s against a 200ms budget", passes+1, took)
		}
		clock = clock.Add(time.Minute)
	}
	if len(delivered) != 12 {
		t.Fatalf("after %d passes: %d of 12 findings delivered", passes, len(delivered))
	}
	if passes < 2 {
		t.Fatalf("everything went in %d pass(es): the test did not run out of time", passes)
	}
	for s, c := range delivered {
		if c != 1 {
			t.Fatalf("%s delivered %d times", s, c)
		}
	}
	for _, rec := range store.findings {
		if rec.AlertedAt.IsZero() {
			t.Fatalf("delivered but not recorded: %+v", rec)
		}
	}
}

// TestReconciler_Parked: a finding the receiver refuses alone is parked: not
// sent again until its back-off is over, then sent again (never dropped).
func TestReconciler_Parked(t *testing.T) {
	store := &memStore{parents: sandboxParents(2), findings: map[ledger.Key]ledger.Record{}}
	refuse := true
	var sent []string
	n := &notifier{notify: func(a ledger.Alert) (bool, error) {
		for _, f := range a.Findings {
			if f.SessionID == "p01" && refuse {
				return false, fmt.Errorf("status 400: %w", ledger.ErrAlertRefused)
			}
		}
		for _, f := range a.Findings {
			sent = append(sent, f.SessionID)
		}
		return false, nil
	}}
	clock := now
	r := &ledger.Reconciler{Store: store, Config: cfg, Notifier: n, Now: func() time.Time { return clock }}
	rep, err := r.Run(context.Background())
	if err != nil || rep.Alerted != 1 || rep.AlertsParked != 1 {
		t.Fatalf("pass 1: %+v %v", rep, err)
	}
	calls := n.calls
	for _, after := range []time.Duration{time.Minute, 9 * time.Minute} { // still parked
		clock = now.Add(after)
		if rep, _ = r.Run(context.Background()); n.calls != calls || rep.AlertsParked != 1 {
			t.Fatalf("parked finding sent again after %s: %d calls (%+v)", after, n.calls-calls, rep)
		}
	}
	clock = now.Add(11 * time.Minute) // back-off over, still refused: parked twice as long
	if rep, _ = r.Run(context.Background()); n.calls != calls+1 || rep.AlertsParked != 1 {
		t.Fatalf("after the back-off: %d calls (%+v)", n.calls-calls, rep)
	}
	rec := store.findings[ledger.Key{SessionID: "p01", Code: ledger.SandboxInLive}]
	if rec.AlertRefusals != 2 || !rec.AlertRetryAt.Equal(clock.Add(20*time.Minute)) {
		t.Fatalf("second refusal: %+v", rec)
	}
	refuse, clock = false, clock.Add(21*time.Minute)
	if rep, _ = r.Run(context.Background()); rep.Alerted != 1 || rep.AlertsParked != 0 {
		t.Fatalf("receiver fixed: %+v", rep)
	}
	if strings.Join(sent, ",") != "p00,p01" {
		t.Fatalf("sent %v", sent)
	}
}

// hangingInquirer is Ottu's API accepting the question and never answering.
type hangingInquirer struct{ calls int }

func (h *hangingInquirer) Inquire(ctx context.Context, _ ledger.Question, _ string) error {
	h.calls++
	<-ctx.Done()
	return ctx.Err()
}

// TestReconciler_OttuHangs: with Ottu's API hanging, the pass writes and
// alerts its findings first, asks within its budget, and ends in time
// without error.
func TestReconciler_OttuHangs(t *testing.T) {
	over := with(parent("paid", "2"), op("r1", "refund", "refunded", "5")) // OVER_REFUND: needs Ottu's word
	store := &memStore{parents: []*ledger.Parent{over}, findings: map[ledger.Key]ledger.Record{}}
	var alerted int
	n := &notifier{notify: func(a ledger.Alert) (bool, error) { alerted += len(a.Findings); return false, nil }}
	q := &hangingInquirer{}
	r := &ledger.Reconciler{Store: store, Config: cfg, Notifier: n, Inquirer: q, Now: func() time.Time { return now },
		Reserve: 10 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("pass failed: %v", err)
	}
	if took := time.Since(start); took > 350*time.Millisecond {
		t.Fatalf("pass took %s: the questions had no budget", took)
	}
	if rep.Raised == 0 || alerted != rep.Raised || q.calls == 0 || rep.InquiryErrors != q.calls {
		t.Fatalf("raised %d, alerted %d, asked %d: %+v", rep.Raised, alerted, q.calls, rep)
	}
	if len(store.runs) != 1 || store.runs[0].Error != "" {
		t.Fatalf("runs: %+v", store.runs)
	}
}

// TestReconciler_LeaseLostMidAlert: the lease is checked before each part:
// once it is lost, nothing more is sent or written.
func TestReconciler_LeaseLostMidAlert(t *testing.T) {
	store := &memStore{parents: sandboxParents(3), findings: map[ledger.Key]ledger.Record{}}
	lost := errors.New("pass lease not held")
	held := true
	// One finding per alert, so that there is a second part to fence.
	n := &notifier{notify: func(a ledger.Alert) (bool, error) {
		if len(a.Findings) > 1 {
			return false, ledger.ErrAlertRefused
		}
		held = false // another replica takes over while this part is sent
		return false, nil
	}}
	r := &ledger.Reconciler{Store: store, Config: cfg, Notifier: n, Now: func() time.Time { return now },
		Guard: func() error {
			if held {
				return nil
			}
			return lost
		}}
	_, err := r.Run(context.Background())
	if !errors.Is(err, lost) {
		t.Fatalf("got %v, want the lease's error", err)
	}
	if n.calls != 2 || len(store.runs) != 0 { // the part of 3 refused, then one finding sent
		t.Fatalf("%d alerts after the lease was lost; runs %+v", n.calls, store.runs)
	}
}
