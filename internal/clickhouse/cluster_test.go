package clickhouse

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/nettest"
	"github.com/ottu-recon/ottu-recon/schema"
)

// clusterDB returns a DB on the replicated cluster scripts/clickhouse-cluster.sh
// started (both nodes), on a fresh database; it skips without one, unless
// CI is set.
func clusterDB(t *testing.T) *DB {
	t.Helper()
	addrs, name := os.Getenv("CLICKHOUSE_CLUSTER_ADDRS"), os.Getenv("CLICKHOUSE_CLUSTER_NAME")
	if addrs == "" || name == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("CLICKHOUSE_CLUSTER_ADDRS is not set: run under scripts/clickhouse-cluster.sh")
		}
		t.Skip("no cluster: run under scripts/clickhouse-cluster.sh run")
	}
	db := &DB{Addrs: strings.Split(addrs, ","), Database: fmt.Sprintf("ottu_cluster_%d", time.Now().UnixNano()%1e9),
		Username: "default", Cluster: name}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_ = db.eachNode(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(db.Database), true)
		_ = db.Close()
	})
	return db
}

// nodeQuery answers q (one UInt64) on each node of db, in order.
func nodeQuery(t *testing.T, db *DB, q string) []uint64 {
	t.Helper()
	var out []uint64
	for _, addr := range db.Addrs {
		node := *db
		node.Addrs = []string{addr}
		conn, err := node.dial(db.Database)
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		err = conn.QueryRow(context.Background(), q).Scan(&n)
		conn.Close()
		if err != nil {
			t.Fatalf("%s on %s: %v", q, addr, err)
		}
		out = append(out, n)
	}
	return out
}

// TestCluster_Migrate: on a 1-shard, 2-replica cluster, migrate creates every
// schema version ON CLUSTER (every table replicated, every view, on both
// nodes), a second run applies nothing, a pass's watermark follows the
// replica's delay, and a cluster created by an earlier schema version (here
// version 2, with rows in it) is upgraded in place, the rows kept once on
// both replicas.
func TestCluster_Migrate(t *testing.T) {
	ctx := context.Background()
	migrations, err := schema.Migrations("x")
	if err != nil {
		t.Fatal(err)
	}
	latest := migrations[len(migrations)-1].Version

	// Taken before the databases: their drops (at cleanup) happen before
	// the next test's DDL, not during it.
	nettest.Lock(t, os.Getenv("CLICKHOUSE_CLUSTER_LOCK")) // a test here kills a node: not during another's ON CLUSTER DDL
	fresh := clusterDB(t)
	if res, err := fresh.Migrate(ctx); err != nil || len(res.Applied) != len(migrations) {
		t.Fatalf("fresh: %+v %v", res, err)
	}
	if res, err := fresh.Migrate(ctx); err != nil || len(res.Applied) != 0 {
		t.Fatalf("re-run: %+v %v (want nothing applied)", res, err)
	}
	for i, n := range nodeQuery(t, fresh, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND engine LIKE 'Replicated%'") {
		if n < 10 {
			t.Errorf("node %d: %d replicated tables", i+1, n)
		}
	}
	for i, n := range nodeQuery(t, fresh, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND engine = 'View'") {
		if n != 4 {
			t.Errorf("node %d: %d views, want payments, operations, findings, coverage", i+1, n)
		}
	}
	for i, n := range nodeQuery(t, fresh, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND engine = 'MaterializedView'") {
		if n != 6 {
			t.Errorf("node %d: %d materialized views, want the change indexes' 6", i+1, n)
		}
	}
	for i, n := range nodeQuery(t, fresh, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND engine NOT LIKE 'Replicated%' AND engine NOT IN ('View', 'MaterializedView')") {
		if n != 0 {
			t.Errorf("node %d: %d tables that are not replicated", i+1, n)
		}
	}
	t.Run("watermark follows replication", func(t *testing.T) { watermarkFollowsReplication(t, fresh) })

	old := clusterDB(t)
	if _, err := old.migrate(ctx, 2); err != nil {
		t.Fatalf("create at version 2: %v", err)
	}
	if err := old.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := old.conn.Exec(ctx, `INSERT INTO merchant_orders (order_no, amount, currency_code, updated_at)
		SELECT concat('o', toString(number)), toDecimal128(number, 8), 'KWD', now() FROM system.numbers LIMIT 100`); err != nil {
		t.Fatal(err)
	}
	if err := old.conn.Exec(ctx, `INSERT INTO payment_events (delivery_id, session_id, state, received_at)
		SELECT concat('d', toString(number)), concat('s', toString(number)), 'paid', now() FROM system.numbers LIMIT 1000`); err != nil {
		t.Fatal(err)
	}
	res, err := old.Migrate(ctx)
	if err != nil || len(res.Applied) != latest-2 {
		t.Fatalf("upgrade from version 2: %+v %v", res, err)
	}
	nettest.WaitFor(t, "1000 payment_events and 100 merchant_orders on each replica after the upgrade", 30*time.Second, func() bool {
		got := nodeQuery(t, old, "SELECT count() FROM payment_events")
		orders := nodeQuery(t, old, "SELECT count() FROM merchant_orders")
		return got[0] == 1000 && got[1] == 1000 && orders[0] == 100 && orders[1] == 100
	})
	// The upgraded views answer on both nodes.
	for i, n := range nodeQuery(t, old, "SELECT count() FROM payments") {
		if n != 1000 {
			t.Errorf("node %d: payments view %d rows", i+1, n)
		}
	}
	// The change indexes: backfilled from one node, replicated to both;
	// what is stored after, on either node, indexed by that node's view
	// and replicated too.
	if err := old.Backfill(ctx, nil); err != nil {
		t.Fatalf("backfill: %v", err)
	}
	if err := old.conn.Exec(ctx, `INSERT INTO payment_events (delivery_id, session_id, state, received_at, stored_at)
		SELECT concat('e', toString(number)), concat('t', toString(number)), 'paid', now(), now() FROM system.numbers LIMIT 10`); err != nil {
		t.Fatal(err)
	}
	nettest.WaitFor(t, "1010 parents in parent_changes and the backfill complete on each replica", 30*time.Second, func() bool {
		got := nodeQuery(t, old, "SELECT uniqExact(session_id) FROM parent_changes WHERE kind = 'payment'")
		done := nodeQuery(t, old, "SELECT count() FROM schema_backfills WHERE source = ''")
		return got[0] == 1010 && got[1] == 1010 && done[0] == 1 && done[1] == 1
	})
}

// watermarkFollowsReplication: with replication held back on the
// replica a pass reads (its fetches stopped) while the other stores, the
// pass's watermark moves back by that replica's delay, so that the next pass
// still looks for what had not arrived.
func watermarkFollowsReplication(t *testing.T, db *DB) {
	ctx := context.Background()
	writer, reader := *db, *db
	writer.Addrs, reader.Addrs = db.Addrs[:1], db.Addrs[1:]
	for _, d := range []*DB{&writer, &reader} {
		if err := d.Open(ctx); err != nil {
			t.Fatal(err)
		}
		defer d.Close()
	}
	hold := "SYSTEM STOP FETCHES " + quoteIdent(db.Database) + ".payment_events"
	if err := reader.conn.Exec(ctx, hold); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reader.conn.Exec(ctx, "SYSTEM START FETCHES "+quoteIdent(db.Database)+".payment_events") }()
	if err := writer.conn.Exec(ctx, `INSERT INTO payment_events (delivery_id, session_id, state, received_at, stored_at)
		SELECT 'd1', 's1', 'paid', now(), now()`); err != nil {
		t.Fatal(err)
	}
	store := &Store{DB: &reader}
	deadline := time.Now().Add(30 * time.Second)
	for {
		now, err := reader.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wm, err := store.Watermark(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if now.Sub(wm) >= 2*time.Second {
			break // the watermark is behind by the replica's delay
		}
		if time.Now().After(deadline) {
			t.Fatalf("watermark %s with the replica behind, server clock %s: not moved back", wm, now)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := reader.conn.Exec(ctx, "SYSTEM START FETCHES "+quoteIdent(db.Database)+".payment_events"); err != nil {
		t.Fatal(err)
	}
	for {
		now, _ := reader.Now(ctx)
		wm, err := store.Watermark(ctx)
		if err == nil && now.Sub(wm) < time.Second {
			break // caught up: the watermark is the clock again
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("watermark %s still behind %s after replication resumed", wm, now)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
