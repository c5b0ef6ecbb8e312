package reconcile

import (
	"context"
	"maps"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/ottusim"
)

// TestCompleteness_LostOrders: six merchant orders created two hours ago,
// none of whose payment webhooks reached ingest; Ottu holds four as paid
// (one for 12.500 where the order says 10.000), one as pending, one not at
// all; a seventh order's webhook arrived. The sweep asks Ottu about the six
// orders only; every paid one raises MISSING_PAYMENT_WEBHOOK and shows in
// payments, the amount mismatch is raised, the pending and the unknown raise
// nothing; a pass at once asks nothing again, and Ottu never refuses a
// question.
func TestCompleteness_LostOrders(t *testing.T) {
	key := []byte("psq-key")
	now := time.Now().UTC()
	gen := &ottusim.Generator{Now: now.Add(-time.Hour), Grace: 10 * time.Minute}
	var paid []ottusim.Parent
	for range 4 {
		paid = append(paid, gen.Parent(ottusim.Purchase))
	}
	over := paid[0]
	over.Order = &ottusim.Order{OrderNo: over.Order.OrderNo, Amount: "10.000", Currency: "KWD"}
	over.Truth = maps.Clone(over.Truth)
	over.Truth["amount"], over.Truth["currency_code"] = "12.500", "KWD"
	paid[0] = over
	pending := gen.Parent(ottusim.Purchase)
	pending.Truth = maps.Clone(pending.Truth)
	pending.Truth["state"], pending.Truth["result"] = "pending", "pending"
	unknown := gen.Parent(ottusim.Purchase) // Ottu never heard of it
	arrived := gen.Parent(ottusim.Purchase) // its webhook came
	api := &ottusim.API{Key: "api-key", HMACKey: key}
	api.Add(append(slices.Clone(paid), pending, arrived)...)
	srv := httptest.NewServer(api)
	defer srv.Close()
	_, db, m, pub := mustRig(t, askingOttu(srv.URL, key))
	var orders []ottusim.Order
	for _, p := range append(slices.Clone(paid), pending, unknown, arrived) {
		o := *p.Order
		o.UpdatedAt = now.Add(-2 * time.Hour)
		orders = append(orders, o)
	}
	insertOrders(t, db, orders)
	for _, w := range arrived.Webhooks {
		publishAt(t, pub, ottusim.Sign(w.Object, events.SchemeA, key), w.At)
	}
	waitFor(t, "the arrived webhook stored", 20*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == uint64(len(arrived.Webhooks))
	})

	// Pass 1 asks about the six orders; pass 2 reads what Ottu said.
	rep, err := m.Pass(context.Background())
	if err != nil || rep.Swept != 6 || api.Stats().Calls != 6 {
		t.Fatalf("pass 1: %+v %v, %d calls; want the six orders asked", rep, err, api.Stats().Calls)
	}
	if n := chtest.Count(t, db, "SELECT count() FROM ottu_inquiries WHERE order_no = ?", arrived.Order.OrderNo); n != 0 {
		t.Fatal("the order whose webhook arrived was asked about")
	}
	if _, err := m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	missing := openFindings(t, m, ledger.MissingPaymentWebhook)
	for _, p := range paid {
		if !missing[p.SessionID] {
			t.Errorf("no MISSING_PAYMENT_WEBHOOK for the lost paid payment %s (%v)", p.SessionID, missing)
		}
		if n := chtest.Count(t, db, "SELECT count() FROM payments WHERE session_id = ? AND state = 'paid'", p.SessionID); n != 1 {
			t.Errorf("payments does not show %s paid", p.SessionID)
		}
	}
	if len(missing) != 4 {
		t.Errorf("MISSING_PAYMENT_WEBHOOK for %v; want the four paid only", missing)
	}
	if mismatch := openFindings(t, m, ledger.OrderAmountMismatch); !mismatch[over.SessionID] || len(mismatch) != 1 {
		t.Errorf("ORDER_AMOUNT_MISMATCH for %v; want the recovered 12.500 against its order of 10.000", mismatch)
	}
	if n := chtest.Count(t, db, "SELECT count() FROM findings WHERE session_id IN (?, ?)", pending.SessionID, arrived.SessionID); n != 0 {
		t.Errorf("%d findings for the pending order and the arrived one", n)
	}

	// At once again: nothing is asked twice within 30 minutes.
	if rep, _ := m.Pass(context.Background()); rep.Inquiries != 0 || api.Stats().Calls != 6 {
		t.Fatalf("pass 3 asked again: %+v, %d calls", rep, api.Stats().Calls)
	}
	if st := api.Stats(); st.Throttled != 0 || st.RateLimited != 0 || st.Answered != 5 || st.NotFound != 1 {
		t.Fatalf("Ottu answered %+v; want 5 records and one unknown, nothing refused", st)
	}
}

// TestCompleteness_LostPaidWebhook: a parent whose only webhook says pending
// (95 minutes ago) while Ottu's record says paid becomes paid, raises
// MISSING_PAYMENT_WEBHOOK, and resolves it when Ottu's paid webhook arrives
// after all, byte for byte the record stored.
func TestCompleteness_LostPaidWebhook(t *testing.T) {
	key := []byte("psq-key")
	now := time.Now().UTC()
	gen := &ottusim.Generator{Now: now, Grace: 10 * time.Minute}
	p := gen.Parent(ottusim.Purchase)
	at := now.Add(-95 * time.Minute)
	pendingBody := maps.Clone(p.Webhooks[0].Object)
	pendingBody["state"], pendingBody["result"] = "pending", "pending"
	pendingBody["timestamp_utc"] = at.Format(time.DateTime)
	p.Truth = maps.Clone(p.Webhooks[0].Object)
	p.Created = at
	api := &ottusim.API{Key: "api-key", HMACKey: key}
	api.Add(p)
	srv := httptest.NewServer(api)
	defer srv.Close()
	_, db, m, pub := mustRig(t, askingOttu(srv.URL, key))
	publishAt(t, pub, ottusim.Sign(pendingBody, events.SchemeA, key), at)
	waitFor(t, "the pending webhook stored", 20*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 1
	})
	if rep, err := m.Pass(context.Background()); err != nil || rep.Swept != 1 {
		t.Fatalf("pass 1: %+v %v; want the pending parent asked", rep, err)
	}
	if _, err := m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := chtest.Count(t, db, "SELECT count() FROM payments WHERE session_id = ? AND state = 'paid'", p.SessionID); n != 1 {
		t.Fatal("payments does not show the parent paid")
	}
	if !openFindings(t, m, ledger.MissingPaymentWebhook)[p.SessionID] {
		t.Fatal("no MISSING_PAYMENT_WEBHOOK for the paid webhook that never arrived")
	}
	// Ottu's own paid webhook arrives, the very body of its record.
	record := chtest.Count(t, db, "SELECT count() FROM webhooks_raw WHERE source = 'inquiry'")
	publishAt(t, pub, ottusim.Sign(p.Truth, events.SchemeA, key), now)
	waitFor(t, "the paid webhook stored beside the record", 20*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw WHERE source = 'webhook'") == 2
	})
	if record != 1 {
		t.Fatalf("%d records stored, want 1", record)
	}
	if _, err := m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if openFindings(t, m, ledger.MissingPaymentWebhook)[p.SessionID] {
		t.Fatal("MISSING_PAYMENT_WEBHOOK still open after the paid webhook arrived")
	}
}

// TestCompleteness_Lose5Percent: 1,000 simulated payments, the webhooks of 5 %
// of them lost. Passes two minutes apart (the clock of reconcile and of
// Ottu's API moved on) recover every lost paid payment within Ottu's
// throttle: each raises MISSING_PAYMENT_WEBHOOK, no other payment does, and
// Ottu never answers 429 nor refuses a question.
func TestCompleteness_Lose5Percent(t *testing.T) {
	key := []byte("sim-key")
	start := time.Now().UTC()
	clock := start
	now := func() time.Time { return clock }
	gen := &ottusim.Generator{Now: start, Grace: 10 * time.Minute}
	parents := gen.Mix(1000, 0.2)
	lost := ottusim.Lose(parents, 0.05)
	api := &ottusim.API{Key: "api-key", HMACKey: key, Now: now}
	api.Add(parents...)
	srv := httptest.NewServer(api)
	defer srv.Close()
	_, db, m, pub := mustRig(t, askingOttu(srv.URL, key))
	m.Now = now
	var orders []ottusim.Order
	n := 0
	for _, p := range parents {
		if p.Order != nil {
			orders = append(orders, *p.Order)
		}
		for _, w := range p.Webhooks {
			publishAt(t, pub, ottusim.Sign(w.Object, events.SchemeA, key), w.At)
			n++
		}
	}
	insertOrders(t, db, orders)
	waitFor(t, "every webhook stored", 60*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw")+chtest.Count(t, db, "SELECT count() FROM unreadable_webhooks") >= uint64(n)
	})
	for pass := 0; pass < 12; pass++ {
		if _, err := m.Pass(context.Background()); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(2 * time.Minute)
	}
	// Besides the lost ones, the parents of orphan operations: their paid
	// webhook never came either, and Ottu's record says they were paid.
	want := map[string]bool{}
	for _, s := range lost {
		want[s] = true
	}
	for _, p := range parents {
		if p.Kind == ottusim.Kind(ledger.OrphanOperation) {
			want[p.SessionID] = true
		}
	}
	missing := openFindings(t, m, ledger.MissingPaymentWebhook)
	for s := range want {
		if !missing[s] {
			t.Errorf("payment %s whose webhook never came not recovered", s)
		}
	}
	for s := range missing {
		if !want[s] {
			t.Errorf("false MISSING_PAYMENT_WEBHOOK for %s", s)
		}
	}
	if st := api.Stats(); st.RateLimited != 0 || st.Throttled != 0 {
		t.Fatalf("Ottu refused questions: %+v", st)
	}
	t.Logf("%d lost, %d with an orphan operation, %d recovered; Ottu answered %+v", len(lost), len(want)-len(lost), len(missing), api.Stats())
}
