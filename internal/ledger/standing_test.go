package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// TestReconciler_Standings: what people decide in the console, as passes
// honour it. An acknowledged finding is not alerted while its evidence is
// unchanged, and is alerted again when new evidence arrives and the rule
// still fires; a finding resolved by hand is not counted open nor alerted
// while its evidence is unchanged, and reopens (alerted again) on new
// evidence; a muted one waits out its mute.
func TestReconciler_Standings(t *testing.T) {
	sandbox := func(id string) *ledger.Parent {
		p := parent("paid", "1")
		p.SessionID, p.Sandbox, p.LastSeq = id, true, 10
		return p
	}
	acked, resolved, muted := sandbox("acked"), sandbox("resolved"), sandbox("muted")
	store := &memStore{parents: []*ledger.Parent{acked, resolved, muted}, findings: map[ledger.Key]ledger.Record{},
		standings: map[ledger.Key]ledger.Decision{}}
	var alerted []string
	n := &notifier{notify: func(a ledger.Alert) (bool, error) {
		for _, f := range a.Findings {
			alerted = append(alerted, f.SessionID)
		}
		return false, nil
	}}
	clock := now
	r := &ledger.Reconciler{Store: store, Config: cfg, Notifier: n, Now: func() time.Time { return clock }, NotifyAttempts: 1}
	key := func(id string) ledger.Key { return ledger.Key{SessionID: id, Code: ledger.SandboxInLive} }
	pass := func(name string, wantAlerted []string, wantOpen int) {
		t.Helper()
		alerted = nil
		clock = clock.Add(5 * time.Minute)
		rep, err := r.Run(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(alerted) != len(wantAlerted) || rep.Open != wantOpen {
			t.Fatalf("%s: alerted %v, open %d; want %v, %d", name, alerted, rep.Open, wantAlerted, wantOpen)
		}
		for i := range wantAlerted {
			if alerted[i] != wantAlerted[i] {
				t.Fatalf("%s: alerted %v, want %v", name, alerted, wantAlerted)
			}
		}
	}

	// Before the first pass, nothing is known: the findings are raised and,
	// the receiver being there, alerted. Evidence is recorded.
	ev := ledger.Evidence(acked)
	store.standings[key("muted")] = ledger.Decision{MutedUntil: now.Add(time.Hour)}
	pass("raised", []string{"acked", "resolved"}, 3)
	if got := store.findings[key("acked")].Evidence; got != ev || ev == "" {
		t.Fatalf("evidence %q, want %q", got, ev)
	}
	// People decide: acknowledged, resolved by hand, with the evidence they saw.
	store.standings[key("acked")] = ledger.Decision{AckBy: "ana", AckEvidence: ev}
	store.standings[key("resolved")] = ledger.Decision{ResolveBy: "ana", ResolveEvidence: ev}
	pass("decided", nil, 2) // resolved by hand is not open; muted still waits

	// Nothing new: the rules still fire; nothing is alerted again.
	pass("unchanged", nil, 2)

	// New evidence on each (a delivery stored after): the acknowledged one
	// and the one resolved by hand are theirs to look at again.
	for _, p := range []*ledger.Parent{acked, resolved, muted} {
		p.LastSeq++
	}
	pass("new evidence", []string{"acked", "resolved"}, 3)
	pass("alerted once", nil, 3)

	// The mute runs out: the muted finding, never alerted, is alerted now.
	clock = now.Add(time.Hour)
	pass("mute over", []string{"muted"}, 3)
}

// TestEvidence: the fingerprint changes with a new delivery, an unreadable
// one or the merchant order, and with nothing else.
func TestEvidence(t *testing.T) {
	base := func() *ledger.Parent {
		p := parent("paid", "1")
		p.LastSeq = 7
		return p
	}
	ev := ledger.Evidence(base())
	tests := []struct {
		name   string
		change func(*ledger.Parent)
		same   bool
	}{
		{"nothing", func(*ledger.Parent) {}, true},
		{"state read again", func(p *ledger.Parent) { p.State = "paid" }, true},
		{"time passes", func(p *ledger.Parent) { p.LastPaymentAt = p.LastPaymentAt.Add(time.Hour) }, true},
		{"Ottu asked again", func(p *ledger.Parent) { p.Ottu = &ledger.OttuRecord{AskedAt: now} }, true},
		{"a new delivery", func(p *ledger.Parent) { p.LastSeq++ }, false},
		{"an unreadable delivery", func(p *ledger.Parent) { p.Unreadable = append(p.Unreadable, ledger.Unreadable{DeliveryID: "d"}) }, false},
		{"a merchant order", func(p *ledger.Parent) { p.Order = &ledger.Order{Currency: "KWD"} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base()
			tt.change(p)
			if got := ledger.Evidence(p) == ev; got != tt.same {
				t.Fatalf("same evidence: %v, want %v", got, tt.same)
			}
		})
	}
}
