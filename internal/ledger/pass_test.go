package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// TestReconciler_FullEvery: a full pass comes RECON_FULL_EVERY after the last
// full pass, however often incremental passes run in between.
func TestReconciler_FullEvery(t *testing.T) {
	store := &memStore{findings: map[ledger.Key]ledger.Record{}}
	clock := now
	r := &ledger.Reconciler{Store: store, Config: cfg, Now: func() time.Time { return clock }, FullEvery: time.Hour}
	var full []bool
	for i := 0; i < 25; i++ { // every 5 minutes for two hours
		rep, err := r.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		full = append(full, rep.Full)
		clock = clock.Add(5 * time.Minute)
	}
	for i, f := range full {
		if want := i%12 == 0; f != want {
			t.Fatalf("pass %d (minute %d): full %v, want %v", i, 5*i, f, want)
		}
	}
}

// TestReconciler_Windows: an incremental pass asks for every anchor that a
// time-based rule measures from, over the span since the last pass.
func TestReconciler_Windows(t *testing.T) {
	store := &memStore{findings: map[ledger.Key]ledger.Record{}}
	clock := now
	r := &ledger.Reconciler{Store: store, Config: cfg, Now: func() time.Time { return clock }}
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(5 * time.Minute)
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	sel := store.lastSel
	if sel.All {
		t.Fatal("second pass is full")
	}
	for _, tr := range ledger.Triggers(cfg) {
		from, to := now.Add(-ledger.Margin).Add(-tr.Delay), clock.Add(-tr.Delay)
		if !slices.ContainsFunc(sel.Windows, func(w ledger.Window) bool {
			return w.Anchor == tr.Anchor && w.From.Equal(from) && w.To.Equal(to)
		}) {
			t.Errorf("no window for %s (%s after %s): %+v", tr.Rule, tr.Delay, tr.Anchor, sel.Windows)
		}
	}
}

// TestTriggers: every rule whose outcome can change with time alone, with no
// new delivery, has a trigger. Each parent below fires only once time passes.
func TestTriggers(t *testing.T) {
	queued := op("r1", "refund", "refund_queued", "5")
	queued.QueuedSince = now
	orphan := &ledger.Parent{SessionID: "s1", Operations: []ledger.Operation{op("r1", "refund", "refunded", "5")}}
	orphan.Operations[0].FirstReceived = now
	listed := parent("paid", "10")
	listed.LastPaymentAt, listed.Listed = now, map[string]time.Time{"child": now}
	totals := parent("paid", "10")
	totals.LastPaymentAt, totals.RefundedAmount = now, amt("3")
	stale := parent("authorized", "10")
	stale.AuthorizedAt = now
	fresh := func(p *ledger.Parent, ops ...ledger.Operation) *ledger.Parent {
		for i := range ops {
			ops[i].FirstReceived = now
		}
		return with(p, ops...)
	}
	for _, tc := range []struct {
		p    *ledger.Parent
		code ledger.Code
	}{
		{with(parent("paid", "10"), queued), ledger.StuckRefund},
		{orphan, ledger.OrphanOperation},
		{listed, ledger.MissingOperation},
		{totals, ledger.ParentTotalsMismatch},
		{stale, ledger.StaleAuthorization},
		// An operation just ahead of its parent's webhook: the parent is still pending.
		{fresh(parent("pending", "10"), op("r1", "refund", "refunded", "5")), ledger.OperationOnInvalidState},
		{fresh(parent("authorized", "10"), op("c1", "capture", "paid", "11")), ledger.OverCapture},
		{fresh(parent("paid", "10"), op("r1", "refund", "refunded", "11")), ledger.OverRefund},
		{fresh(parent("authorized", "10"), op("v1", "void", "voided", "9")), ledger.VoidAmountMismatch},
	} {
		if got := codes(ledger.Evaluate(tc.p, cfg, now)); slices.Contains(got, tc.code) {
			t.Fatalf("%s fires at once", tc.code)
		}
		if got := codes(ledger.Evaluate(tc.p, cfg, now.Add(200*time.Hour))); !slices.Contains(got, tc.code) {
			t.Fatalf("%s never fires: %v", tc.code, got)
		}
		if !slices.ContainsFunc(ledger.Triggers(cfg), func(tr ledger.Trigger) bool { return tr.Rule == tc.code }) {
			t.Errorf("%s fires with time but has no trigger", tc.code)
		}
	}
}

// TestReconciler_ParentFailure: a parent that cannot be read fails neither the
// pass nor its open findings; it is counted and retried by the next pass.
func TestReconciler_ParentFailure(t *testing.T) {
	bad := parent("paid", "1")
	bad.SessionID, bad.Sandbox = "bad", true
	good := parent("paid", "1")
	good.SessionID, good.Sandbox = "good", true
	store := &memStore{parents: []*ledger.Parent{bad, good}, findings: map[ledger.Key]ledger.Record{}}
	clock := now
	var reported []string
	r := &ledger.Reconciler{Store: store, Config: cfg, Now: func() time.Time { return clock },
		OnParentError: func(id string, err error) { reported = append(reported, id) }}
	if rep, err := r.Run(context.Background()); err != nil || rep.Raised != 2 {
		t.Fatalf("pass 1: %+v %v", rep, err)
	}
	bad.Err, bad.Sandbox = errors.New("parse stored amount"), false
	clock = clock.Add(5 * time.Minute)
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("pass 2 failed for one parent: %v", err)
	}
	if rep.ParentsFailed != 1 || !slices.Equal(rep.FailedSessions, []string{"bad"}) || rep.Resolved != 0 || rep.Open != 2 {
		t.Fatalf("pass 2: %+v", rep)
	}
	if !slices.Equal(reported, []string{"bad"}) {
		t.Fatalf("reported %v", reported)
	}
	if got := store.findings[ledger.Key{SessionID: "bad", Code: ledger.SandboxInLive}]; got.Status != ledger.StatusOpen {
		t.Fatalf("an unreadable parent's finding was resolved: %+v", got)
	}
	bad.Err = nil
	clock = clock.Add(5 * time.Minute)
	if rep, err = r.Run(context.Background()); err != nil || rep.Resolved != 1 || rep.ParentsFailed != 0 {
		t.Fatalf("pass 3: %+v %v", rep, err)
	}
	if !slices.Contains(store.lastSel.Sessions, "bad") {
		t.Fatalf("pass 3 did not ask for the failed parent: %+v", store.lastSel)
	}
}

// TestReconciler_AlertSplit: a receiver that refuses one finding (or alerts
// over a size) gets every other finding; most severe and oldest first.
func TestReconciler_AlertSplit(t *testing.T) {
	var parents []*ledger.Parent
	for i := range 9 {
		p := parent("paid", "1")
		p.SessionID, p.Sandbox = fmt.Sprintf("p%d", i), true // SANDBOX_IN_LIVE, critical
		parents = append(parents, p)
	}
	stale := parent("authorized", "40")
	stale.SessionID, stale.AuthorizedAt = "a-stale", now.Add(-200*time.Hour) // STALE_AUTHORIZATION, info
	parents = append(parents, stale)
	store := &memStore{parents: parents, findings: map[ledger.Key]ledger.Record{}}
	var got []string
	n := &notifier{notify: func(a ledger.Alert) (bool, error) {
		if len(a.Findings) > 4 {
			return false, fmt.Errorf("status 413: %w", ledger.ErrAlertRefused)
		}
		for _, f := range a.Findings {
			if f.SessionID == "p3" {
				return false, fmt.Errorf("status 400: %w", ledger.ErrAlertRefused)
			}
		}
		for _, f := range a.Findings {
			got = append(got, f.SessionID)
		}
		return false, nil
	}}
	r := &ledger.Reconciler{Store: store, Config: cfg, Notifier: n, Now: func() time.Time { return now }}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"p0", "p1", "p2", "p4", "p5", "p6", "p7", "p8", "a-stale"}
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v (critical first, p3 alone refused)", got, want)
	}
	if rep.Alerted != 9 || rep.AlertsPending != 0 || rep.AlertsParked != 1 || !strings.Contains(rep.AlertError, "p3") {
		t.Fatalf("report: %+v", rep)
	}
	p3 := store.findings[ledger.Key{SessionID: "p3", Code: ledger.SandboxInLive}]
	if p3.AlertRefusals != 1 || !p3.AlertRetryAt.Equal(now.Add(ledger.ParkFor(1))) || !p3.AlertedAt.IsZero() {
		t.Fatalf("p3 not parked: %+v", p3)
	}
}

// publisher is a function-field fake ledger.Publisher.
type publisher struct{ publish func(ledger.Alert) error }

func (p *publisher) PublishFindings(_ context.Context, a ledger.Alert) error { return p.publish(a) }

// TestReconciler_PublishRetried: findings whose announcement JetStream did not
// acknowledge are announced again by the next pass, and only those.
func TestReconciler_PublishRetried(t *testing.T) {
	p := parent("paid", "1")
	p.Sandbox = true
	store := &memStore{parents: []*ledger.Parent{p}, findings: map[ledger.Key]ledger.Record{}}
	var published int
	pub := &publisher{publish: func(ledger.Alert) error { return errors.New("nats: timeout") }}
	clock := now
	r := &ledger.Reconciler{Store: store, Config: cfg, Publisher: pub, Now: func() time.Time { return clock }}
	if rep, _ := r.Run(context.Background()); rep.AlertError == "" {
		t.Fatalf("pass 1: %+v", rep)
	}
	pub.publish = func(a ledger.Alert) error { published += len(a.Findings); return nil }
	for range 2 {
		clock = clock.Add(5 * time.Minute)
		if rep, err := r.Run(context.Background()); err != nil || rep.AlertError != "" {
			t.Fatalf("pass: %+v %v", rep, err)
		}
	}
	if published != 1 {
		t.Fatalf("published %d times, want once", published)
	}
	if rec := store.findings[ledger.Key{SessionID: "s1", Code: ledger.SandboxInLive}]; rec.PublishedAt.IsZero() {
		t.Fatalf("not marked published: %+v", rec)
	}
}

func TestUnreadableWebhook(t *testing.T) {
	p := &ledger.Parent{SessionID: "s1", Unreadable: []ledger.Unreadable{
		{DeliveryID: "d2", Kind: "payment", Field: "amount", Reason: "negative: \"-1\"", ReceivedAt: now},
	}}
	fs := ledger.Evaluate(p, cfg, now)
	if !slices.Equal(codes(fs), []ledger.Code{ledger.UnreadableWebhook}) || !strings.Contains(fs[0].Detail, "field amount") {
		t.Fatalf("got %+v", fs)
	}
	if fs[0].Severity != ledger.Critical {
		t.Fatalf("severity %s", fs[0].Severity)
	}
}

func TestCleanDetail(t *testing.T) {
	long := strings.Repeat("é", 600) // 1,200 bytes
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"a\nb\x00c\td|e\"f", "a b c d|e\"f"},
		{"bad utf8 \xff", "bad utf8  "},
	} {
		if got := ledger.CleanDetail(tc.in); got != tc.want {
			t.Errorf("CleanDetail(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	got := ledger.CleanDetail(long)
	if len(got) > ledger.MaxDetail || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Fatalf("long detail: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}

// TestReplayedWebhook: deliveries of one operation that disagree on a value
// Ottu never changes and no signature covers, or one signed reference under
// two parents, are evidence of a replay; a gateway-side operation re-posted as
// source input stays gateway-side.
func TestReplayedWebhook(t *testing.T) {
	reposted := func(mod func(v *ledger.Variant)) *ledger.Parent {
		o := op("r1", "refund", "refunded", "5")
		o.Source = "input" // the latest delivery
		v := ledger.Variant{Operation: "refund", Amount: amt("5"), TxnAmount: amt("5"), Currency: "KWD", TxnState: "refunded",
			Source: "input", Child: "c-r1"}
		mod(&v)
		o.Seen.Add(v)
		return with(parent("paid", "25.5"), o)
	}
	shared := parent("paid", "25.5")
	shared.Shared = []ledger.Shared{{Kind: "payment", ReferenceNumber: "att-1", Sessions: []string{"other", "s1"}}}
	for _, tc := range []struct {
		name   string
		p      *ledger.Parent
		want   []ledger.Code
		detail string
	}{
		{"pg re-posted as input", reposted(func(v *ledger.Variant) { v.Source = "pg" }),
			[]ledger.Code{ledger.PGSideOperation, ledger.ReplayedWebhook}, "source (input vs pg)"},
		{"another txn.session_id", reposted(func(v *ledger.Variant) { v.Child = "c-forged" }),
			[]ledger.Code{ledger.ReplayedWebhook}, "txn.session_id"},
		{"a signed reference under another parent", shared, []ledger.Code{ledger.ReplayedWebhook}, "session_id other"},
		{"an identical re-delivery", reposted(func(*ledger.Variant) {}), []ledger.Code{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := ledger.Evaluate(tc.p, cfg, now)
			if got := codes(fs); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for _, f := range fs {
				if f.Code == ledger.ReplayedWebhook && !strings.Contains(f.Detail, tc.detail) {
					t.Fatalf("detail %q does not name %q", f.Detail, tc.detail)
				}
				if f.Code == ledger.PGSideOperation && !strings.Contains(f.Detail, "no signature covers: source") {
					t.Fatalf("detail %q does not say it rests on an unsigned value", f.Detail)
				}
			}
		})
	}
}

// TestOttuRecord: what Ottu's own record (Payment Status Query) says of a
// parent's operations: agreement confirms the findings that need its word,
// disagreement contradicts them and raises REPLAYED_WEBHOOK.
func TestOttuRecord(t *testing.T) {
	asked := now.Add(-30 * time.Minute)
	record := func(children map[string]ledger.OttuChild) *ledger.OttuRecord {
		return &ledger.OttuRecord{AskedAt: asked, Found: true, State: "paid", Children: children}
	}
	refunded := ledger.OttuChild{State: "refunded", Amount: amt("5"), Currency: "KWD"}
	full := func(change func(*ledger.OttuRecord)) *ledger.OttuRecord {
		r := record(map[string]ledger.OttuChild{"c-r1": refunded})
		r.Amount, r.Currency = amt("2.000"), "KWD"
		change(r)
		return r
	}
	for _, tc := range []struct {
		name         string
		ottu         *ledger.OttuRecord
		op           func(*ledger.Operation)
		contradicted bool
	}{
		{"same child, same amount", record(map[string]ledger.OttuChild{"c-r1": refunded}), nil, false},
		{"queued here, refunded at Ottu", record(map[string]ledger.OttuChild{"c-r1": refunded}),
			func(o *ledger.Operation) { o.TxnState = "refund_queued" }, false},
		{"another amount at Ottu", record(map[string]ledger.OttuChild{"c-r1": {State: "refunded", Amount: amt("4")}}), nil, true},
		{"a child Ottu never made", record(map[string]ledger.OttuChild{}), nil, true},
		{"an operation newer than the question", record(map[string]ledger.OttuChild{}),
			func(o *ledger.Operation) { o.FirstReceived = now }, false},
		{"Ottu does not know the parent", &ledger.OttuRecord{AskedAt: asked}, nil, true},
		{"every value agrees (2.000 is 2)", full(func(*ledger.OttuRecord) {}), nil, false},
		{"another parent amount at Ottu", full(func(r *ledger.OttuRecord) { r.Amount = amt("20") }), nil, true},
		{"another currency at Ottu", full(func(r *ledger.OttuRecord) { r.Currency = "BHD" }), nil, true},
		{"a sandbox payment at Ottu", full(func(r *ledger.OttuRecord) { r.Sandbox = true }), nil, true},
		{"never paid at Ottu", full(func(r *ledger.OttuRecord) { r.State = "pending" }), nil, true},
		{"paid after the question", full(func(r *ledger.OttuRecord) { r.State = "pending"; r.AskedAt = now.Add(-2 * time.Hour) }),
			func(o *ledger.Operation) { o.FirstReceived = now }, false},
		{"the child in another currency", full(func(r *ledger.OttuRecord) {
			r.Children["c-r1"] = ledger.OttuChild{State: "refunded", Amount: amt("5"), Currency: "USD"}
		}), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := op("r1", "refund", "refunded", "5")
			if tc.op != nil {
				tc.op(&o)
			}
			p := with(parent("paid", "2"), o) // refunds over the paid amount: OVER_REFUND, which needs Ottu's word
			p.Ottu = tc.ottu
			fs := ledger.Evaluate(p, cfg, now)
			var over ledger.Finding
			for _, f := range fs {
				if f.Code == ledger.OverRefund {
					over = f
				}
			}
			replayed := slices.Contains(codes(fs), ledger.ReplayedWebhook)
			want := "confirmed by Ottu"
			if tc.contradicted {
				want = "contradicted by Ottu"
			}
			if over.Code == "" { // OVER_REFUND does not fire (a queued refund, a fresh one): only the contradiction counts
				want = ""
			}
			if !strings.HasPrefix(over.Confirmation, want) || replayed != tc.contradicted {
				t.Fatalf("confirmation %q, REPLAYED_WEBHOOK %v; want %q and %v", over.Confirmation, replayed, want, tc.contradicted)
			}
		})
	}
}
