package clickhouse_test

import (
	"context"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// TestDecisionSQL holds the findings view's SQL to ledger.Decision: for
// each case of ledger's TestDecision (a finding with evidence or without,
// open or resolved by a pass; acknowledged, resolved by hand or muted, with
// the evidence it has or an older one; a mute rule matching it, ended or
// not), the view shows what the console shows (casefile.Finding.Apply).
func TestDecisionSQL(t *testing.T) {
	db := chtest.MustOpenDB(t)
	ctx := context.Background()
	now, err := db.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	amount := events.Amount{Valid: true}
	type act struct{ action, evidence string }
	cases := []struct {
		id       string
		evidence string
		resolved bool
		gateway  string
		acts     []act
	}{
		{id: "none", evidence: "e1"},
		{id: "acked", evidence: "e1", acts: []act{{casefile.ActionAcknowledge, "e1"}}},
		{id: "acked-older", evidence: "e1", acts: []act{{casefile.ActionAcknowledge, "e0"}}},
		{id: "acked-pass-resolved", evidence: "e1", resolved: true, acts: []act{{casefile.ActionAcknowledge, "e1"}}},
		{id: "resolved", evidence: "e1", acts: []act{{casefile.ActionResolve, "e1"}}},
		{id: "resolved-older", evidence: "e1", acts: []act{{casefile.ActionResolve, "e0"}}},
		{id: "resolved-twice", evidence: "e1", resolved: true, acts: []act{{casefile.ActionResolve, "e1"}}},
		{id: "empty-resolved", acts: []act{{casefile.ActionResolve, ""}}},
		{id: "empty-acked", acts: []act{{casefile.ActionAcknowledge, ""}}},
		{id: "empty-none"},
		{id: "muted", evidence: "e1", acts: []act{{casefile.ActionMute, ""}}},
		{id: "by-rule", evidence: "e1", gateway: "knet"},
		{id: "by-ended-rule", evidence: "e1", gateway: "benefit"},
	}
	var recs []ledger.Record
	for _, c := range cases {
		r := ledger.Record{Finding: ledger.Finding{SessionID: c.id, Code: ledger.SandboxInLive, Severity: ledger.Warning, Detail: "d"},
			Status: ledger.StatusOpen, FirstSeen: now.Add(-time.Hour), LastSeen: now, Evidence: c.evidence,
			Stake: ledger.Stake{Amount: amount, Currency: "KWD", Gateway: c.gateway}}
		if c.resolved {
			r.Status, r.ResolvedAt = ledger.StatusResolved, now.Add(-30*time.Minute)
		}
		recs = append(recs, r)
	}
	if err := (&clickhouse.Store{DB: db}).SaveFindings(ctx, recs); err != nil {
		t.Fatal(err)
	}
	var acts []casefile.Action
	for i, c := range cases {
		for _, a := range c.acts {
			x := casefile.Action{SessionID: c.id, Code: string(ledger.SandboxInLive), Action: a.action, Actor: "ana", Note: "n",
				Evidence: a.evidence, At: now.Add(-time.Duration(10+i) * time.Minute)}
			if x.Evidence == "" && c.evidence != "" {
				x.Evidence = c.evidence
			}
			if a.action == casefile.ActionMute {
				x.Until = new(now.Add(24 * time.Hour))
			}
			acts = append(acts, x)
		}
	}
	if _, err := db.AddActions(ctx, acts); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddMuteRule(ctx, ledger.MuteRule{Code: string(ledger.SandboxInLive), Gateway: "knet", Until: now.Add(48 * time.Hour), Actor: "bo"}); err != nil {
		t.Fatal(err)
	}
	ended, err := db.AddMuteRule(ctx, ledger.MuteRule{Gateway: "benefit", Currency: "KWD", Until: now.Add(48 * time.Hour), Actor: "bo"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.EndMuteRule(ctx, ended.ID, "bo", "done"); err != nil {
		t.Fatal(err)
	}
	states, _, err := db.FindingStates(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	decisions, err := db.Decisions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]casefile.Finding{}
	for i := range states {
		states[i].Apply(decisions.Of(states[i].Key(), states[i].Gateway, states[i].Currency))
		byID[states[i].SessionID] = states[i]
	}
	compareView(t, db, states)
	// And the cases read as the ledger's table says.
	for id, want := range map[string]string{"acked": "ana", "empty-acked": "ana", "acked-older": "", "acked-pass-resolved": ""} {
		if got := byID[id].AcknowledgedBy; got != want {
			t.Errorf("%s: acknowledged by %q, want %q", id, got, want)
		}
	}
	for id, want := range map[string]string{"resolved": "ana", "empty-resolved": "ana", "resolved-older": "", "resolved-twice": "ana", "none": ""} {
		if got := byID[id].ResolvedBy; got != want {
			t.Errorf("%s: resolved by %q, want %q", id, got, want)
		}
	}
	for id, muted := range map[string]bool{"muted": true, "by-rule": true, "by-ended-rule": false, "none": false} {
		if got := byID[id].MutedUntil != nil && byID[id].MutedUntil.After(now); got != muted {
			t.Errorf("%s: muted %v, want %v", id, got, muted)
		}
	}
}
