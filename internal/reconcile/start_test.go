package reconcile

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/nats"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
	"github.com/ottu-recon/ottu-recon/internal/nettest"
)

// TestServe_StartsWhileNATSDown: reconcile started before NATS (a host reboot
// where NATS comes up last) answers 503, retries, and stores everything once
// NATS is there.
func TestServe_StartsWhileNATSDown(t *testing.T) {
	db := chtest.MustOpenDB(t)
	natsAddr := nettest.FreeAddr(t)
	m := openWaiting(t, testConfig(t, "nats://"+natsAddr, db))
	if code, _ := nettest.Get(t, m.URL()+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz while NATS is down: %d, want 503", code)
	}
	waitFor(t, "a retry counted", 10*time.Second, func() bool {
		_, body := nettest.Get(t, m.URL()+"/metrics")
		return strings.Contains(body, `ottu_reconcile_dependency_retries_total{dependency="nats"}`)
	})

	ns := &nats.Server{Listen: natsAddr, StoreDir: t.TempDir(), Logger: natstest.Logger(t)}
	if err := ns.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Close)
	publishStored(t, ns.ClientURL(), db, 20)
	waitFor(t, "ready", 10*time.Second, func() bool {
		code, _ := nettest.Get(t, m.URL()+"/readyz")
		return code == http.StatusOK
	})
}

// TestServe_StartsWhileClickHouseDown: the same with ClickHouse down at start
// (the schema is migrated once it answers).
func TestServe_StartsWhileClickHouseDown(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.NewDB(t) // not even created yet
	px := startProxy(t, db.Addrs[0])
	px.down()
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.ClickHouseAddrs = []string{px.addr}
	m := openWaiting(t, cfg)
	p := publisher(t, ns.ClientURL())
	for i := range 20 {
		publish(t, p, paymentBody(i, "paid"))
	}
	waitFor(t, "a retry counted", 10*time.Second, func() bool {
		_, body := nettest.Get(t, m.URL()+"/metrics")
		return strings.Contains(body, `ottu_reconcile_dependency_retries_total{dependency="clickhouse"}`)
	})
	code, body := nettest.Get(t, m.URL()+"/readyz")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("readyz while ClickHouse is down: %d %s, want 503", code, body)
	}
	if _, err := m.Pass(context.Background()); err == nil {
		t.Fatal("a pass ran without ClickHouse")
	}

	px.up(t)
	waitFor(t, "ready", 30*time.Second, func() bool {
		code, _ := nettest.Get(t, m.URL()+"/readyz")
		return code == http.StatusOK
	})
	if err := db.Open(context.Background()); err != nil { // migrated by reconcile
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	waitFor(t, "every webhook stored once ClickHouse is up", 60*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 20
	})
	if _, err := m.Pass(context.Background()); err != nil {
		t.Fatalf("pass once ClickHouse is up: %v", err)
	}
}

// TestServe_BackfillsBeside: reconcile serve started on a database an earlier
// release left (schema 9, a history in it) upgrades it, stores webhooks, and
// fills the change indexes beside: the history's deliveries and those it
// stored are all indexed once the backfill is complete.
func TestServe_BackfillsBeside(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.NewDB(t)
	ctx := context.Background()
	if _, err := db.MigrateTo(ctx, clickhouse.ChangeIndexVersion-1); err != nil {
		t.Fatal(err)
	}
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Conn().Exec(ctx, `INSERT INTO payment_events (delivery_id, stream_seq, received_at, stored_at, session_id, state,
		amount, currency_code, timestamp_utc, is_terminal, state_rank, child_session_ids, child_states, child_amounts, child_currency_codes)
		SELECT concat('h', toString(number)), number, now() - number * 3600, now() - number * 3600, concat('old-', toString(number)),
		'paid', toDecimal128(5, 8), 'KWD', now() - number * 3600, 1, 7, [], [], [], [] FROM system.numbers LIMIT 2000`); err != nil {
		t.Fatal(err)
	}
	openWaiting(t, testConfig(t, ns.ClientURL(), db))
	publishStored(t, ns.ClientURL(), db, 20)
	waitFor(t, "the backfill complete", 60*time.Second, func() bool {
		ok, err := db.BackfillComplete(ctx, clickhouse.ChangeIndexVersion)
		return err == nil && ok
	})
	if n := chtest.Count(t, db, "SELECT uniqExact(session_id) FROM parent_changes WHERE kind = 'payment'"); n != 2020 {
		t.Fatalf("parent_changes holds %d parents, want the history's 2000 and the 20 stored since", n)
	}
	if n := chtest.Count(t, db, "SELECT uniqExact(session_id) FROM parent_months"); n != 2020 {
		t.Fatalf("parent_months holds %d parents, want 2020", n)
	}
}

// publishStored publishes n paid payments into the stream at natsURL and
// waits until reconcile stored them all in db.
func publishStored(t *testing.T, natsURL string, db *clickhouse.DB, n int) {
	t.Helper()
	p := publisher(t, natsURL)
	for i := range n {
		publish(t, p, paymentBody(i, "paid"))
	}
	waitFor(t, fmt.Sprintf("%d webhooks stored", n), 60*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == uint64(n)
	})
}
