package reconcile

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
	"github.com/ottu-recon/ottu-recon/internal/ottusim"
)

// TestScaleOut_Replicas: two, then three, reconcile serve replicas on one
// stream and database, all on a one-second schedule: exactly one holds the
// pass lease, every finding of a seeded corpus is alerted exactly once, and
// when the holder stops mid-run another takes over within the lease's TTL
// and alerts the findings raised after, again once.
func TestScaleOut_Replicas(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d replicas", n), func(t *testing.T) { scaleOut(t, n) })
	}
}

func scaleOut(t *testing.T, n int) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
	sink := &alertSink{key: []byte("alert-key")}
	alerts := httptest.NewServer(sink)
	defer alerts.Close()
	var replicas []*Main
	for range n {
		cfg := testConfig(t, ns.ClientURL(), db)
		cfg.Schedule, cfg.LeaseTTL = "@every 1s", 2*time.Second
		cfg.AlertURL, cfg.AlertHMACKey = alerts.URL, "alert-key"
		m := NewMain(cfg, natstest.Logger(t))
		m.RetryMin = 50 * time.Millisecond
		if err := m.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, m)
	}
	defer func() {
		for _, m := range replicas {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := m.Close(ctx); err != nil {
				t.Logf("close: %v", err)
			}
			cancel()
		}
	}()
	pub := publisher(t, ns.ClientURL())
	gen := &ottusim.Generator{Now: time.Now().UTC(), Grace: 10 * time.Minute}
	want := map[finding]bool{}
	send := func(kinds []ottusim.Kind) {
		var orders []ottusim.Order
		for _, k := range kinds {
			p := gen.Parent(k)
			for _, c := range p.Expect {
				want[finding{p.SessionID, c}] = true
			}
			if p.Order != nil {
				orders = append(orders, *p.Order)
			}
			for _, w := range p.Webhooks {
				publishAt(t, pub, ottusim.Sign(w.Object, events.SchemeA, []byte("k")), w.At)
			}
		}
		insertOrders(t, db, orders)
	}
	alertedOnce := func() (map[finding]int, bool) {
		got, _ := sink.snapshot()
		count := map[finding]int{}
		for _, a := range got {
			for _, f := range a.Findings {
				count[finding{f.SessionID, ledger.Code(f.Code)}]++
			}
		}
		for f := range want {
			if count[f] == 0 {
				return count, false
			}
		}
		return count, true
	}
	holders := func() []int {
		var out []int
		for i, m := range replicas {
			if held, _ := m.lease.Held(); held {
				out = append(out, i)
			}
		}
		return out
	}

	send(append(append([]ottusim.Kind(nil), ottusim.AnomalyKinds...), ottusim.CleanKinds...))
	waitFor(t, "every finding alerted", 60*time.Second, func() bool { _, ok := alertedOnce(); return ok })
	if h := holders(); len(h) != 1 {
		t.Fatalf("lease holders: %v, want exactly one", h)
	}

	// The holder stops mid-run (with two replicas, shut down; with three, its
	// NATS connection dies and it gives nothing back); new anomalies arrive.
	holder := holders()[0]
	stopped := time.Now()
	how := "shut down"
	if n == 3 {
		how = "lost NATS"
		if err := replicas[holder].conn.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	} else if err := replicas[holder].Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	gone := replicas[holder]
	others := append(append([]*Main(nil), replicas[:holder]...), replicas[holder+1:]...)
	waitFor(t, "another replica takes the lease", 10*time.Second, func() bool {
		for _, m := range others {
			if held, _ := m.lease.Held(); held {
				return true
			}
		}
		return false
	})
	if held, _ := gone.lease.Held(); held {
		t.Fatal("the stopped holder still counts itself as holding")
	}
	t.Logf("%d replicas: takeover %s after the holder %s (lease TTL 2s)", n, time.Since(stopped).Round(10*time.Millisecond), how)
	send(ottusim.AnomalyKinds)
	waitFor(t, "the new findings alerted", 60*time.Second, func() bool { _, ok := alertedOnce(); return ok })

	count, _ := alertedOnce()
	for f, c := range count {
		if c != 1 {
			t.Errorf("%s %s alerted %d times", f.code, f.session, c)
		}
	}
	// Passes run while the corpus is still being stored (with receive times
	// long past), so a parent can show a passing state, say an operation
	// stored before its payment: such a finding is raised, alerted once like
	// any other, and resolved.
	for f := range count {
		if !want[f] {
			t.Logf("transient finding (alerted once): %s %s", f.code, f.session)
		}
	}
}
