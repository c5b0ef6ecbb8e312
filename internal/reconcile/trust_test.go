package reconcile

import (
	"context"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
)

// TestTrust_OperationAheadOfParent: a refund and a capture arriving a minute
// before their parents' paid and authorized webhooks (the parents still
// pending, RECON_GRACE 10m) raise and alert nothing, before or after the
// parents' webhooks arrive.
func TestTrust_OperationAheadOfParent(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
	rcv, sinkURL := newReceiver(t)
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.Grace, cfg.AlertURL = 10*time.Minute, sinkURL
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

// TestTrust_Replays: the done-when of "Trust": a gateway-side refund re-posted
// with source input and a timestamp_utc an hour later leaves
// PG_SIDE_OPERATION open and raises REPLAYED_WEBHOOK; a signed payment body
// re-posted under another session_id is raised for both parents; an old
// failed body re-posted with a future timestamp_utc does not become the
// parent's state.
func TestTrust_Replays(t *testing.T) {
	_, db, m, pub := mustRig(t, nil)
	now := time.Now().UTC()
	ts := func(d time.Duration) string { return now.Add(d).Format("2006-01-02 15:04:05") }

	publishAt(t, pub, signed(payment("pg-parent", map[string]any{"timestamp_utc": ts(-2 * time.Hour)})), now.Add(-2*time.Hour))
	refund := pgRefund("pg-parent")
	refund["timestamp_utc"] = ts(-time.Hour)
	publishAt(t, pub, signed(refund), now.Add(-time.Hour))
	publishAt(t, pub, signed(payment("victim", map[string]any{"timestamp_utc": ts(-2 * time.Hour)})), now.Add(-2*time.Hour))
	waitFor(t, "stored", 20*time.Second, func() bool { return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 3 })
	if _, err := m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := openFindings(t, m, ledger.PGSideOperation); !got["pg-parent"] {
		t.Fatal("no PG_SIDE_OPERATION to begin with")
	}

	// The replays: unsigned fields changed, signed ones as they were.
	refund["source"], refund["timestamp_utc"] = "input", ts(0)
	publishAt(t, pub, signed(refund), now)
	moved := payment("victim", map[string]any{"timestamp_utc": ts(-2 * time.Hour)})
	moved["session_id"] = "thief"
	publishAt(t, pub, signed(moved), now)
	failed := payment("victim", map[string]any{"state": "failed", "result": "failed", "timestamp_utc": ts(2 * time.Hour)})
	publishAt(t, pub, signed(failed), now)
	waitFor(t, "stored", 20*time.Second, func() bool { return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 6 })
	if _, err := m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := openFindings(t, m, ledger.PGSideOperation); !got["pg-parent"] {
		t.Fatal("the re-post resolved PG_SIDE_OPERATION")
	}
	if got := openFindings(t, m, ledger.ReplayedWebhook); !got["pg-parent"] || !got["victim"] || !got["thief"] {
		t.Fatalf("REPLAYED_WEBHOOK raised for %v, want pg-parent, victim and thief", got)
	}
	var state string
	if err := db.Conn().QueryRow(context.Background(), "SELECT state FROM payments WHERE session_id = 'victim'").Scan(&state); err != nil || state != "paid" {
		t.Fatalf("victim's state: %q %v, want paid (a future timestamp_utc must not make the failed body the latest)", state, err)
	}
}
