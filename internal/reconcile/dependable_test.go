package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
	"github.com/ottu-recon/ottu-recon/internal/nettest"
)

// scheduled runs a pass as the schedule does: bounded by RECON_PASS_TIMEOUT.
func scheduled(t *testing.T, m *Main) (ledger.Run, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), m.Config.PassTimeout)
	defer cancel()
	start := time.Now()
	rep, err := m.Pass(ctx)
	return rep, time.Since(start), err
}

// TestDependable_SlowSingleReceiver: a receiver that takes one finding per
// request (413 for more) and answers slowly, passes too short to send
// everything: all 12 findings arrive exactly once over four passes, and no
// pass fails.
func TestDependable_SlowSingleReceiver(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
	var mu sync.Mutex
	got, requests := map[string]int{}, 0
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(500 * time.Millisecond) // the receiver's own slowness
		var p alertBody
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &p)
		mu.Lock()
		defer mu.Unlock()
		requests++
		if len(p.Findings) > 1 {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		for _, f := range p.Findings {
			got[f.SessionID]++
		}
	}))
	defer rcv.Close()
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.AlertURL = rcv.URL
	cfg.PassTimeout = 4 * time.Second // 8 receiver answers: the 2 s and 15 s, scaled
	m := MustOpenMain(t, cfg)
	pub := publisher(t, ns.ClientURL())
	for i := range 12 {
		s := fmt.Sprintf("pg-%02d", i)
		publishAt(t, pub, signed(payment(s, nil)), time.Now())
		publishAt(t, pub, signed(pgRefund(s)), time.Now())
	}
	waitFor(t, "stored", 20*time.Second, func() bool { return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 24 })
	for pass := 1; pass <= 4; pass++ {
		rep, took, err := scheduled(t, m)
		if err != nil {
			t.Fatalf("pass %d failed after %s: %v", pass, took, err)
		}
		t.Logf("pass %d: %s, alerted %d, pending %d, %q", pass, took.Round(time.Millisecond), rep.Alerted, rep.AlertsPending, rep.AlertError)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 12 {
		t.Fatalf("%d of 12 findings delivered in four passes (%d requests)", len(got), requests)
	}
	for s, n := range got {
		if n != 1 {
			t.Fatalf("%s delivered %d times", s, n)
		}
	}
	if n := chtest.Count(t, db, "SELECT count() FROM findings WHERE alerted_at IS NULL"); n != 0 {
		t.Fatalf("%d delivered findings not recorded as alerted", n)
	}
}

// TestDependable_NATSRebuiltEmpty: the NATS server is replaced by one with
// empty storage (disk lost): ingest and reconcile create the stream, the
// store consumer, the lease bucket and the console's sessions bucket again
// by themselves; the webhooks posted after are stored, scheduled passes go
// on, and a person signs in to the console again.
func TestDependable_NATSRebuiltEmpty(t *testing.T) {
	addr := nettest.FreeAddr(t)
	first := natstest.MustOpenServer(t, addr, t.TempDir())
	db := chtest.MustOpenDB(t)
	cfg := testConfig(t, first.ClientURL(), db)
	cfg.LeaseTTL = 2 * time.Second
	cfg.Console.Listen, cfg.Console.UsersFile = "127.0.0.1:0", writeUsers(t, "ada", "operator", operatorPassword)
	m := MustOpenMain(t, cfg)
	im := mustIngest(t, first.ClientURL(), signKey, nil)
	post := func(session string) {
		resp, err := http.Post(im.URL()+"/webhooks/ottu", "application/json", bytes.NewReader(signed(payment(session, nil))))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s answered %d", session, resp.StatusCode)
		}
	}
	for i := range 5 {
		post(fmt.Sprintf("before-%d", i))
	}
	waitFor(t, "stored before", 20*time.Second, func() bool { return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 5 })
	waitFor(t, "the lease", 10*time.Second, func() bool { held, _ := m.lease.Held(); return held })

	first.Close()
	natstest.MustOpenServer(t, addr, t.TempDir()) // same address, empty storage
	for i := range 10 {
		post(fmt.Sprintf("after-%d", i))
	}
	waitFor(t, "the 10 webhooks posted after the rebuild stored", 60*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 15
	})
	waitFor(t, "the lease again", 20*time.Second, func() bool { held, _ := m.lease.Held(); return held })
	waitFor(t, "a sign-in to the console again", 20*time.Second, func() bool {
		resp, _ := newClient(t, m.ConsoleURL()).signIn("ada", operatorPassword)
		return resp.StatusCode == http.StatusSeeOther
	})
	if _, err := m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	metrics := nettestMetrics(t, m.URL()+"/metrics")
	for _, what := range []string{"consumer", "lease_bucket"} {
		if !strings.Contains(metrics, `ottu_reconcile_nats_recreated_total{what="`+what+`"}`) {
			t.Errorf("the re-created %s is not counted", what)
		}
	}
	if n := chtest.Count(t, db, "SELECT toUInt64(count() - uniqExact(delivery_id)) FROM webhooks_raw"); n != 0 {
		t.Fatalf("%d deliveries stored twice", n)
	}
}

func nettestMetrics(t *testing.T, url string) string {
	t.Helper()
	_, body := nettest.Get(t, url)
	return body
}
