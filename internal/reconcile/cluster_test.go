package reconcile

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
	"github.com/ottu-recon/ottu-recon/internal/nettest"
	"github.com/ottu-recon/ottu-recon/internal/ottusim"
)

// replicaCounts answers q (one UInt64) on each replica, in order.
func replicaCounts(t *testing.T, db *clickhouse.DB, q string) []uint64 {
	t.Helper()
	var out []uint64
	for _, addr := range db.Addrs {
		node := &clickhouse.DB{Addrs: []string{addr}, Database: db.Database, Username: db.Username}
		if err := node.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		var n uint64
		err := node.Conn().QueryRow(context.Background(), q).Scan(&n)
		node.Close()
		if err != nil {
			t.Fatalf("%s on %s: %v", q, addr, err)
		}
		out = append(out, n)
	}
	return out
}

// TestCluster_Daemons: on a replicated cluster (1 shard, 2 replicas), with
// CLICKHOUSE_ADDR listing both nodes: a seeded corpus posted to ingest is
// stored once on both replicas, and a pass reading through the other node
// raises exactly the expected findings. Then the node the store writes
// through is killed mid-traffic and restarted: every webhook answered 200 is
// stored exactly once on both replicas after catch-up, passes go on through
// the other node meanwhile, and no finding is doubled.
func TestCluster_Daemons(t *testing.T) {
	addrs, name, pids := os.Getenv("CLICKHOUSE_CLUSTER_ADDRS"), os.Getenv("CLICKHOUSE_CLUSTER_NAME"), os.Getenv("CLICKHOUSE_CLUSTER_PIDS")
	if addrs == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("CLICKHOUSE_CLUSTER_ADDRS is not set: run under scripts/clickhouse-cluster.sh")
		}
		t.Skip("no cluster: run under scripts/clickhouse-cluster.sh run")
	}
	nettest.Lock(t, os.Getenv("CLICKHOUSE_CLUSTER_LOCK")) // a test here kills a node: not during another's ON CLUSTER DDL
	nodes := strings.Split(addrs, ",")
	ns := natstest.MustOpenServer(t, "", "")
	database := fmt.Sprintf("ottu_cluster_daemons_%d", time.Now().UnixNano()%1e9)
	cluster := &clickhouse.DB{Addrs: nodes, Database: database, Username: "default", Cluster: name}
	t.Cleanup(func() {
		for _, addr := range nodes { // not ON CLUSTER: a node may be down
			admin := &clickhouse.DB{Addrs: []string{addr}, Database: "default", Username: "default"}
			if admin.Open(context.Background()) == nil {
				_ = admin.Conn().Exec(context.Background(), "DROP DATABASE IF EXISTS "+database)
				admin.Close()
			}
		}
	})
	start := time.Now()
	if _, err := cluster.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("migrate on the cluster: %s", time.Since(start).Round(time.Millisecond))

	// The store writes through the first node it can reach (both listed);
	// passes read through the second node alone.
	cfg := DefaultConfig()
	cfg.NATSURL, cfg.ClickHouseAddrs, cfg.ClickHouseDatabase, cfg.ClickHouseCluster = ns.ClientURL(), nodes, database, name
	cfg.InsertQuorum = 2 // as LoadConfig sets it on a cluster
	cfg.Listen, cfg.BatchSize, cfg.BatchWait, cfg.Schedule = "127.0.0.1:0", 100, 50*time.Millisecond, "@every 1h"
	MustOpenMain(t, cfg)
	readerCfg := cfg
	readerCfg.ClickHouseAddrs = nodes[1:]
	reader := NewMain(readerCfg, natstest.Logger(t))
	// Ingest stamps each delivery's arrival now: the pass looks from past the
	// grace, when every rule that waits for it can fire.
	reader.Now = func() time.Time { return time.Now().Add(time.Hour) }

	key := []byte("cluster-key")
	im := mustIngest(t, ns.ClientURL(), key, nil)
	var answered atomic.Int64
	post := func(body []byte) {
		resp, err := http.Post(im.URL()+"/webhooks/ottu", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Errorf("post: %v", err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("post: %d", resp.StatusCode)
			return
		}
		answered.Add(1)
	}

	// A seeded corpus: exactly the expected findings, through the other node.
	start = time.Now()
	gen := &ottusim.Generator{Now: time.Now().UTC(), Grace: cfg.Grace}
	want := map[finding]bool{}
	for _, k := range append(append([]ottusim.Kind(nil), ottusim.AnomalyKinds...), ottusim.CleanKinds...) {
		switch k {
		case ottusim.Kind(ledger.OrderAmountMismatch): // needs merchant_orders rows
			continue
		case ottusim.RecentListedChild: // its child's webhook is on the way: depends on arrival times ingest sets now
			continue
		} // (the single-node end-to-end test covers both)
		p := gen.Parent(k)
		for _, c := range p.Expect {
			want[finding{p.SessionID, c}] = true
		}
		for _, w := range p.Webhooks {
			post(ottusim.Sign(w.Object, events.SchemeA, key))
		}
	}
	stored := func() []uint64 {
		return replicaCounts(t, cluster, "SELECT count() + (SELECT count() FROM unreadable_webhooks) FROM webhooks_raw")
	}
	waitFor(t, "the corpus on both replicas", 60*time.Second, func() bool {
		c := stored()
		return c[0] == uint64(answered.Load()) && c[1] == uint64(answered.Load())
	})
	t.Logf("corpus of %d webhooks posted and on both replicas in %s", answered.Load(), time.Since(start).Round(time.Millisecond))
	rep, err := reader.Pass(openedFor(t, reader))
	if err != nil {
		t.Fatal(err)
	}
	open, err := (&clickhouse.Store{DB: reader.db}).OpenFindings(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := findingSet(open); diff(got, want) != "[]" {
		t.Fatalf("pass through the other node (%+v): findings differ: %s", rep, diff(got, want))
	}

	// The first node killed mid-traffic, then restarted.
	pid, _ := strconv.Atoi(strings.Split(pids, ",")[0])
	restarted := false
	restart := func() {
		out, err := exec.Command(os.Getenv("CLICKHOUSE_CLUSTER_SCRIPT"), "start-node", "1").CombinedOutput()
		if err != nil {
			t.Fatalf("restart node 1: %v\n%s", err, out)
		}
		restarted = true
	}
	t.Cleanup(func() { // leave the cluster whole for the next test, whatever happened
		if !restarted {
			_, _ = exec.Command(os.Getenv("CLICKHOUSE_CLUSTER_SCRIPT"), "start-node", "1").CombinedOutput()
		}
	})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 300 {
			if i == 100 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			post(ottusim.Sign(payment(fmt.Sprintf("during-%03d", i), nil), events.SchemeA, key))
		}
	})
	wg.Wait()
	killedAt := time.Now()
	// Passes go on through the other node while the first is down.
	if rep, err := reader.Pass(context.Background()); err != nil {
		t.Fatalf("pass while a node is down: %+v %v", rep, err)
	}
	restart()
	waitFor(t, "every webhook answered 200 on both replicas", 120*time.Second, func() bool {
		c := stored()
		return c[0] == uint64(answered.Load()) && c[1] == uint64(answered.Load())
	})
	t.Logf("node killed after 100 of 300 webhooks, restarted: %d answered 200, both replicas caught up %s after the kill",
		answered.Load(), time.Since(killedAt).Round(time.Millisecond))
	for _, n := range replicaCounts(t, cluster, "SELECT toUInt64(count() - uniqExact(delivery_id)) FROM webhooks_raw") {
		if n != 0 {
			t.Fatalf("%d deliveries stored twice", n)
		}
	}
	if _, err := reader.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, n := range replicaCounts(t, cluster, "SELECT toUInt64(count() - uniqExact(session_id, code)) FROM findings") {
		if n != 0 {
			t.Fatalf("%d findings doubled", n)
		}
	}
}

// openedFor opens m's database (a Main used only for passes) and closes it
// when the test ends; it returns a context for the pass.
func openedFor(t *testing.T, m *Main) context.Context {
	t.Helper()
	if err := m.db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.db.Close() })
	return context.Background()
}
