package reconcile

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

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
	p := publisher(t, ns.ClientURL())
	for i := range 20 {
		publish(t, p, paymentBody(i, "paid"))
	}
	waitFor(t, "every webhook stored once NATS is up", 60*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 20
	})
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
