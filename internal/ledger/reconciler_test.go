package ledger_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// memStore is an in-memory ledger.Store: parents are given, findings kept.
type memStore struct {
	parents   []*ledger.Parent
	findings  map[ledger.Key]ledger.Record
	runs      []ledger.Run
	lastSel   ledger.Selection
	clock     func() time.Time // the store's clock (Watermark)
	standings map[ledger.Key]ledger.Decision
	rules     []ledger.MuteRule
	sweep     []ledger.Question
}

func (s *memStore) Decisions(context.Context) (ledger.Decisions, error) {
	return ledger.Decisions{ByFinding: s.standings, Rules: s.rules}, nil
}

func (s *memStore) LastPass(context.Context) (ledger.LastPass, bool, error) {
	var lp ledger.LastPass
	found := false
	for _, r := range s.runs {
		if r.Error != "" {
			continue
		}
		found = true
		lp.Started, lp.Watermark, lp.ParentsFailed, lp.FailedSessions = r.Started, r.Watermark, r.ParentsFailed, r.FailedSessions
		if r.Full {
			lp.LastFull = r.Started
		}
	}
	return lp, found, nil
}

func (s *memStore) InquiryCandidates(_ context.Context, q ledger.InquiryQuery) ([]string, error) {
	var out []string
	for _, r := range s.findings {
		if r.Status == ledger.StatusOpen && slices.Contains(q.Codes, r.Code) {
			out = append(out, r.SessionID)
		}
	}
	slices.Sort(out)
	return out, nil
}

// SweepCandidates returns the questions a test planted.
func (s *memStore) SweepCandidates(context.Context, ledger.SweepQuery) ([]ledger.Question, error) {
	return s.sweep, nil
}

func (s *memStore) Watermark(context.Context) (time.Time, error) {
	if s.clock == nil {
		return time.Time{}, nil
	}
	return s.clock(), nil
}

func (s *memStore) OpenFindings(context.Context) ([]ledger.Record, error) {
	var out []ledger.Record
	for _, r := range s.findings {
		if r.Status == ledger.StatusOpen {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *memStore) Parents(_ context.Context, sel ledger.Selection, fn func(*ledger.Parent) error) error {
	s.lastSel = sel
	for _, p := range s.parents {
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) SaveFindings(_ context.Context, recs []ledger.Record) error {
	for _, r := range recs {
		s.findings[r.Key()] = r
	}
	return nil
}

func (s *memStore) SaveRun(_ context.Context, r ledger.Run) error {
	s.runs = append(s.runs, r)
	return nil
}

// notifier is a function-field fake.
type notifier struct {
	notify func(ledger.Alert) (bool, error)
	calls  int
}

func (n *notifier) Notify(_ context.Context, a ledger.Alert) (bool, error) {
	n.calls++
	return n.notify(a)
}

func TestReconciler_Lifecycle(t *testing.T) {
	stale := parent("authorized", "40")
	stale.SessionID, stale.AuthorizedAt = "stale", now.Add(-200*time.Hour)
	sandbox := parent("paid", "1")
	sandbox.SessionID, sandbox.Sandbox = "sandbox", true
	clean := parent("paid", "2")
	clean.SessionID = "clean"
	store := &memStore{parents: []*ledger.Parent{stale, sandbox, clean}, findings: map[ledger.Key]ledger.Record{}}
	store.clock = func() time.Time { return now.Add(-time.Minute) } // the store's clock is a minute behind

	down := errors.New("receiver down")
	n := &notifier{notify: func(ledger.Alert) (bool, error) { return true, down }}
	clock := now
	r := &ledger.Reconciler{Store: store, Config: cfg, Notifier: n, Now: func() time.Time { return clock }, NotifyAttempts: 1, AlertLimit: 1}

	// Pass 1: two findings raised; the alert fails; the pass does not.
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Full || rep.Raised != 2 || rep.Open != 2 || rep.Alerted != 0 || rep.AlertError == "" {
		t.Fatalf("pass 1: %+v", rep)
	}

	// Pass 2: the receiver is back; one finding per alert (AlertLimit 1).
	var sent []ledger.Alert
	n.notify = func(a ledger.Alert) (bool, error) { sent = append(sent, a); return false, nil }
	clock = clock.Add(5 * time.Minute)
	if rep, err = r.Run(context.Background()); err != nil || rep.Raised != 0 || rep.Alerted != 1 {
		t.Fatalf("pass 2: %+v %v", rep, err)
	}
	if store.lastSel.All || !store.lastSel.StoredSince.Equal(now.Add(-time.Minute).Add(-ledger.Margin)) {
		t.Fatalf("pass 2 selection: %+v", store.lastSel)
	}
	// Pass 3: the other one. Pass 4: nothing left to alert.
	clock = clock.Add(5 * time.Minute)
	if rep, _ = r.Run(context.Background()); rep.Alerted != 1 {
		t.Fatalf("pass 3: %+v", rep)
	}
	clock = clock.Add(5 * time.Minute)
	calls := n.calls
	if rep, _ = r.Run(context.Background()); rep.Alerted != 0 || n.calls != calls {
		t.Fatalf("pass 4 alerted again: %+v", rep)
	}
	if len(sent) != 2 || sent[0].Findings[0].Key() == sent[1].Findings[0].Key() {
		t.Fatalf("alerts: %+v", sent)
	}

	// The sandbox parent is cured (say, the environment was a mistake): resolved.
	sandbox.Sandbox = false
	clock = clock.Add(5 * time.Minute)
	if rep, _ = r.Run(context.Background()); rep.Resolved != 1 || rep.Open != 1 {
		t.Fatalf("pass 5: %+v", rep)
	}
	got := store.findings[ledger.Key{SessionID: "sandbox", Code: ledger.SandboxInLive}]
	if got.Status != ledger.StatusResolved || !got.ResolvedAt.Equal(clock.Truncate(time.Second)) || !got.FirstSeen.Equal(now) {
		t.Fatalf("resolved record: %+v", got)
	}
	kept := store.findings[ledger.Key{SessionID: "stale", Code: ledger.StaleAuthorization}]
	if !kept.FirstSeen.Equal(now) || !kept.LastSeen.Equal(clock) || kept.AlertedAt.IsZero() {
		t.Fatalf("open record: %+v", kept)
	}
	if len(store.runs) != 5 {
		t.Fatalf("runs recorded: %d", len(store.runs))
	}
}
