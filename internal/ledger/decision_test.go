package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// TestDecision: what a person's decision means, in one place. The findings
// view's SQL is held to the same table by TestDecisionSQL
// (internal/clickhouse).
func TestDecision(t *testing.T) {
	at := now.Add(-time.Hour)
	passResolved := now.Add(-2 * time.Hour)
	tests := []struct {
		name       string
		d          ledger.Decision
		status     string
		evidence   string
		want       ledger.Shown
		quiet      bool
		byHand     bool
		settled    bool
		passTimeAt bool // a resolved finding keeps the pass's time
	}{
		{name: "nobody decided", status: ledger.StatusOpen, evidence: "e1",
			want: ledger.Shown{Status: ledger.StatusOpen}},
		{name: "acknowledged as it stands", d: ledger.Decision{AckBy: "ana", AckAt: at, AckEvidence: "e1"}, status: ledger.StatusOpen,
			evidence: "e1", want: ledger.Shown{Status: ledger.StatusOpen, AcknowledgedBy: "ana", AcknowledgedAt: at}, quiet: true, settled: true},
		{name: "acknowledged, then new evidence", d: ledger.Decision{AckBy: "ana", AckAt: at, AckEvidence: "e1"}, status: ledger.StatusOpen,
			evidence: "e2", want: ledger.Shown{Status: ledger.StatusOpen}},
		{name: "acknowledged, resolved by a pass", d: ledger.Decision{AckBy: "ana", AckAt: at, AckEvidence: "e1"},
			status: ledger.StatusResolved, evidence: "e1", want: ledger.Shown{Status: ledger.StatusResolved, ResolvedAt: passResolved},
			quiet: true, settled: true, passTimeAt: true},
		{name: "resolved by hand", d: ledger.Decision{ResolveBy: "bo", ResolveAt: at, ResolveEvidence: "e1"}, status: ledger.StatusOpen,
			evidence: "e1", want: ledger.Shown{Status: ledger.StatusResolved, ResolvedAt: at, ResolvedBy: "bo"}, quiet: true, byHand: true, settled: true},
		{name: "resolved by hand, then new evidence", d: ledger.Decision{ResolveBy: "bo", ResolveAt: at, ResolveEvidence: "e1"},
			status: ledger.StatusOpen, evidence: "e2", want: ledger.Shown{Status: ledger.StatusOpen}},
		{name: "resolved by hand and by a pass", d: ledger.Decision{ResolveBy: "bo", ResolveAt: at, ResolveEvidence: "e1"},
			status: ledger.StatusResolved, evidence: "e1", want: ledger.Shown{Status: ledger.StatusResolved, ResolvedAt: passResolved, ResolvedBy: "bo"},
			quiet: true, byHand: true, settled: true, passTimeAt: true},
		// A finding written before evidence was kept: the person saw it
		// without evidence, and it still has none.
		{name: "empty evidence, resolved by hand", d: ledger.Decision{ResolveBy: "bo", ResolveAt: at}, status: ledger.StatusOpen,
			want: ledger.Shown{Status: ledger.StatusResolved, ResolvedAt: at, ResolvedBy: "bo"}, quiet: true, byHand: true, settled: true},
		{name: "empty evidence, acknowledged", d: ledger.Decision{AckBy: "ana", AckAt: at}, status: ledger.StatusOpen,
			want: ledger.Shown{Status: ledger.StatusOpen, AcknowledgedBy: "ana", AcknowledgedAt: at}, quiet: true, settled: true},
		{name: "empty evidence, nobody decided", status: ledger.StatusOpen, want: ledger.Shown{Status: ledger.StatusOpen}},
		{name: "muted", d: ledger.Decision{MutedUntil: now.Add(time.Hour)}, status: ledger.StatusOpen, evidence: "e1",
			want: ledger.Shown{Status: ledger.StatusOpen, MutedUntil: now.Add(time.Hour)}, quiet: true},
		{name: "mute over", d: ledger.Decision{MutedUntil: now}, status: ledger.StatusOpen, evidence: "e1",
			want: ledger.Shown{Status: ledger.StatusOpen, MutedUntil: now}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resolvedAt time.Time
			if tt.status == ledger.StatusResolved {
				resolvedAt = passResolved
			}
			if got := tt.d.Show(tt.status, resolvedAt, tt.evidence); got != tt.want {
				t.Errorf("Show = %+v, want %+v", got, tt.want)
			}
			if got := tt.d.Quiet(tt.evidence, now); got != tt.quiet {
				t.Errorf("Quiet = %v, want %v", got, tt.quiet)
			}
			if got := tt.d.ResolvedByHand(tt.evidence); got != tt.byHand {
				t.Errorf("ResolvedByHand = %v, want %v", got, tt.byHand)
			}
			if got := tt.d.Settled(tt.evidence); got != tt.settled {
				t.Errorf("Settled = %v, want %v", got, tt.settled)
			}
		})
	}
}

// TestMuteRules: a rule mutes what it matches (empty matches any) until its
// end, or until it was ended early; the latest of a finding's own mute and
// its rules' wins.
func TestMuteRules(t *testing.T) {
	k := ledger.Key{SessionID: "s1", Code: ledger.SandboxInLive}
	day := now.Add(24 * time.Hour)
	tests := []struct {
		name  string
		own   time.Time
		rules []ledger.MuteRule
		want  time.Time
	}{
		{"no rule", time.Time{}, nil, time.Time{}},
		{"any code", time.Time{}, []ledger.MuteRule{{Until: day}}, day},
		{"its code", time.Time{}, []ledger.MuteRule{{Code: string(ledger.SandboxInLive), Until: day}}, day},
		{"another code", time.Time{}, []ledger.MuteRule{{Code: string(ledger.OrderAmountMismatch), Until: day}}, time.Time{}},
		{"its gateway and currency", time.Time{}, []ledger.MuteRule{{Gateway: "knet", Currency: "KWD", Until: day}}, day},
		{"another currency", time.Time{}, []ledger.MuteRule{{Gateway: "knet", Currency: "BHD", Until: day}}, time.Time{}},
		{"ended early", time.Time{}, []ledger.MuteRule{{Until: day, EndedBy: "bo", EndedAt: now}}, now},
		{"own mute later", day.Add(time.Hour), []ledger.MuteRule{{Until: day}}, day.Add(time.Hour)},
		{"latest rule", time.Time{}, []ledger.MuteRule{{Until: now.Add(time.Hour)}, {Until: day}}, day},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := ledger.Decisions{ByFinding: map[ledger.Key]ledger.Decision{k: {MutedUntil: tt.own}}, Rules: tt.rules}
			if got := ds.Of(k, "knet", "KWD").MutedUntil; !got.Equal(tt.want) {
				t.Fatalf("muted until %v, want %v", got, tt.want)
			}
		})
	}
}

// TestReconciler_MuteRule: a rule keeps the findings it matches, now or
// later, from being alerted while it lasts; ended early, they are alerted.
func TestReconciler_MuteRule(t *testing.T) {
	p := parent("paid", "1")
	p.Sandbox, p.Gateway = true, "knet"
	store := &memStore{parents: []*ledger.Parent{p}, findings: map[ledger.Key]ledger.Record{}, standings: map[ledger.Key]ledger.Decision{},
		rules: []ledger.MuteRule{{ID: "r1", Code: string(ledger.SandboxInLive), Gateway: "knet", Until: now.Add(24 * time.Hour)}}}
	var alerted int
	n := &notifier{notify: func(a ledger.Alert) (bool, error) { alerted += len(a.Findings); return false, nil }}
	clock := now
	r := &ledger.Reconciler{Store: store, Config: cfg, Notifier: n, Now: func() time.Time { return clock }, NotifyAttempts: 1}
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if alerted != 0 {
		t.Fatalf("a finding the rule matches was alerted")
	}
	store.rules[0].EndedBy, store.rules[0].EndedAt = "bo", now.Add(time.Minute)
	clock = now.Add(5 * time.Minute)
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if alerted != 1 {
		t.Fatalf("alerted %d once the rule ended, want 1", alerted)
	}
}
