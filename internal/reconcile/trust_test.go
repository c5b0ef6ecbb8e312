package reconcile

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
)

// TestTrust_OperationAheadOfParent: a refund and a capture arriving a minute
// before their parents' paid and authorized webhooks (the parents still
// pending, RECON_GRACE 10m) raise and alert nothing, before or after the
// parents' webhooks arrive.
func TestTrust_OperationAheadOfParent(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
	rcv := &receiver{posted: map[string]int{}}
	sink := httptest.NewServer(rcv)
	defer sink.Close()
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.Grace, cfg.AlertURL = 10*time.Minute, sink.URL
	m := MustOpenMain(t, cfg)
	pub := publisher(t, ns.ClientURL())

	start := time.Now().UTC()
	publishAt(t, pub, signed(payment("refunded-early", map[string]any{"state": "pending", "result": "pending"})), start.Add(-2*time.Minute))
	publishAt(t, pub, signed(payment("captured-early", map[string]any{"state": "pending", "result": "pending"})), start.Add(-2*time.Minute))
	refund := pgRefund("refunded-early")
	refund["source"] = "input"
	publishAt(t, pub, signed(refund), start.Add(-time.Minute))
	capture := pgRefund("captured-early")
	capture["source"], capture["operation"] = "input", "capture"
	capture["txn"].(map[string]any)["state"] = "paid"
	publishAt(t, pub, signed(capture), start.Add(-time.Minute))
	waitFor(t, "stored", 20*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 4
	})
	if rep, err := m.Pass(context.Background()); err != nil || rep.Raised != 0 {
		t.Fatalf("pass before the parents' webhooks: %+v %v", rep, err)
	}
	publishAt(t, pub, signed(payment("refunded-early", nil)), start)
	publishAt(t, pub, signed(payment("captured-early", map[string]any{"state": "authorized"})), start)
	waitFor(t, "stored", 20*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 6
	})
	m.Now = func() time.Time { return start.Add(30 * time.Minute) } // well past the grace
	if rep, err := m.Pass(context.Background()); err != nil || rep.Raised != 0 {
		t.Fatalf("pass after the parents' webhooks: %+v %v (findings: %v)", rep, err, rcv.received())
	}
	if got := rcv.received(); len(got) != 0 {
		t.Fatalf("alerted: %v", got)
	}
}
