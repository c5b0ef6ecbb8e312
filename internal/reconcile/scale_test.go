package reconcile

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ingest"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
	"github.com/ottu-recon/ottu-recon/internal/nettest"
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
	sink, alertsURL := alertReceiver(t, "alert-key")
	var replicas []*Main
	for range n {
		cfg := testConfig(t, ns.ClientURL(), db)
		cfg.Schedule, cfg.LeaseTTL = "@every 1s", 2*time.Second
		cfg.AlertURL, cfg.AlertHMACKey = alertsURL, "alert-key"
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

// TestScaleOut_NATSCluster: ingest and reconcile on a three-node NATS
// cluster, the stream with three replicas; steady traffic through ingest;
// the stream's leader is killed mid-run. Every webhook answered 200 is
// stored exactly once, and the pass lease is still held after.
func TestScaleOut_NATSCluster(t *testing.T) {
	cluster := natstest.MustOpenCluster(t, 3)
	db := chtest.MustOpenDB(t)
	key := []byte("cluster-key")

	im := mustIngest(t, cluster.URLs(), key, func(cfg *ingest.Config) {
		cfg.Stream.Replicas, cfg.PublishTimeout = 3, 2*time.Second
	})
	rcfg := testConfig(t, cluster.URLs(), db)
	rcfg.Stream.Replicas, rcfg.Schedule, rcfg.LeaseTTL = 3, "@every 1s", 2*time.Second
	rm := MustOpenMain(t, rcfg)

	gen := &ottusim.Generator{Now: time.Now().UTC(), Grace: 10 * time.Minute}
	var bodies [][]byte
	for len(bodies) < 600 {
		p := gen.Parent(ottusim.Purchase)
		for _, w := range p.Webhooks {
			bodies = append(bodies, ottusim.Sign(w.Object, events.SchemeA, key))
		}
	}
	var (
		sent, ok200 atomic.Int64
		mu          sync.Mutex
		answered    = map[string]bool{}
		next        atomic.Int64
		killed      string
		wg          sync.WaitGroup
	)
	start := time.Now()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for {
				i := int(next.Add(1)) - 1
				if i >= len(bodies) {
					return
				}
				if i == len(bodies)/2 {
					killed = killLeader(t, cluster)
				}
				sent.Add(1)
				resp, err := client.Post(im.URL()+"/webhooks/ottu", "application/json", bytes.NewReader(bodies[i]))
				if err != nil {
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok200.Add(1)
					mu.Lock()
					answered[string(bodies[i])] = true
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	want := uint64(len(answered))
	waitFor(t, "every webhook answered 200 stored", 90*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT uniqExact(delivery_id) FROM webhooks_raw") >= want
	})
	stored := chtest.Count(t, db, "SELECT uniqExact(delivery_id) FROM webhooks_raw")
	rows := chtest.Count(t, db, "SELECT count() FROM webhooks_raw")
	t.Logf("NATS cluster of 3, stream R3, leader %s killed mid-run: sent %d, answered 200 %d (%d distinct), stored %d, duplicated %d, lost %d; %.0f webhooks/s through ingest",
		killed, sent.Load(), ok200.Load(), want, stored, rows-stored, want-min(want, stored), float64(sent.Load())/took.Seconds())
	if sent.Load() != ok200.Load() {
		t.Errorf("%d of %d webhooks not answered 200", sent.Load()-ok200.Load(), sent.Load())
	}
	if stored != want || rows != stored {
		t.Fatalf("stored %d distinct in %d rows, want %d once each", stored, rows, want)
	}
	waitFor(t, "the pass lease held after the node loss", 10*time.Second, func() bool {
		held, _ := rm.lease.Held()
		return held
	})
}

// killLeader shuts down the server that leads the webhook stream and returns its name.
func killLeader(t *testing.T, c *natstest.Cluster) string {
	nc, err := natsgo.Connect(c.URLs())
	if err != nil {
		t.Error(err)
		return ""
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "OTTU_WEBHOOKS")
	if err != nil {
		t.Error(err)
		return ""
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Errorf("stream info: %v", err)
		return ""
	}
	if srv := c.Server(info.Cluster.Leader); srv != nil {
		srv.Shutdown()
	}
	return info.Cluster.Leader
}

// TestScaleOut_IngestReplicas: two ingest processes, each with its own
// spool, on one stream; the same webhook posted to both (say, through a
// retrying load balancer), once straight to the stream and once through a
// spool that forwards it later, is stored once.
func TestScaleOut_IngestReplicas(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
	MustOpenMain(t, testConfig(t, ns.ClientURL(), db))
	key := []byte("replica-key")
	a, b := mustIngest(t, ns.ClientURL(), key, nil), mustIngest(t, ns.ClientURL(), key, nil)
	post := func(m *ingest.Main, body []byte) {
		resp, err := http.Post(m.URL()+"/webhooks/ottu", "application/json", bytes.NewReader(body))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("post: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	gen := &ottusim.Generator{Now: time.Now().UTC()}
	var bodies [][]byte
	for range 20 {
		for _, w := range gen.Parent(ottusim.PurchaseRefunded).Webhooks {
			bodies = append(bodies, ottusim.Sign(w.Object, events.SchemeA, key))
		}
	}
	for _, body := range bodies {
		post(a, body)
		post(b, body)
	}
	waitFor(t, "stored", 30*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT uniqExact(delivery_id) FROM webhooks_raw") == uint64(len(bodies))
	})
	// A third replica that could not reach NATS spooled them all; it forwards
	// them once NATS is reachable for it (here: restarted with the right URL).
	spooled := ingest.DefaultConfig()
	spooled.Listen, spooled.HMACKeys, spooled.NATSURL, spooled.SpoolDir = "127.0.0.1:0", [][]byte{key}, "nats://127.0.0.1:1", t.TempDir()
	c := ingest.NewMain(spooled, natstest.Logger(t))
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	for _, body := range bodies {
		post(c, body)
	}
	backlog := func() int { return int(nettest.Metric(t, c.AdminURL()+"/metrics", "ottu_ingest_spool_backlog")) }
	if got := backlog(); got != len(bodies) {
		t.Fatalf("spooled %d, want %d", got, len(bodies))
	}
	_ = c.Close(context.Background()) // NATS unreachable: the backlog stays on disk
	spooled.NATSURL = ns.ClientURL()
	c = ingest.NewMain(spooled, natstest.Logger(t))
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	waitFor(t, "the spool forwarded", 30*time.Second, func() bool { return backlog() == 0 })
	waitFor(t, "the consumer settled", 30*time.Second, func() bool {
		info := consumerInfo(t, ns.ClientURL(), "ottu-recon-store")
		return info.NumPending == 0 && info.NumAckPending == 0
	})
	if rows := chtest.Count(t, db, "SELECT count() FROM webhooks_raw"); rows != uint64(len(bodies)) {
		t.Fatalf("webhooks_raw: %d rows for %d webhooks posted to three replicas", rows, len(bodies))
	}
}
