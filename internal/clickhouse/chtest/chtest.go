// Package chtest gives tests a real ClickHouse database of their own.
package chtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
)

var counter atomic.Int64

// Addrs returns CLICKHOUSE_ADDR. Without it the test is skipped, or fails
// under CI=true: `make test` starts a server and sets it.
func Addrs(tb testing.TB) []string {
	tb.Helper()
	v := os.Getenv("CLICKHOUSE_ADDR")
	if v == "" {
		msg := "CLICKHOUSE_ADDR is not set: run `make test`, which starts ClickHouse with scripts/clickhouse.sh, " +
			"or `scripts/clickhouse.sh run go test ./...`"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return strings.Split(v, ",")
}

// NewDB returns an unopened DB on a fresh, unique database name that is
// dropped when the test ends; on addrs, else on CLICKHOUSE_ADDR.
func NewDB(tb testing.TB, addrs ...string) *clickhouse.DB {
	tb.Helper()
	if len(addrs) == 0 {
		addrs = Addrs(tb)
	}
	db := &clickhouse.DB{
		Addrs:    addrs,
		Database: fmt.Sprintf("ottu_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, counter.Add(1)),
		Username: "default",
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dropDatabase(ctx, db); err != nil {
			tb.Logf("drop test database %s: %v", db.Database, err)
		}
	})
	return db
}

// MustOpenDB returns a migrated, open DB on a fresh database (on addrs, else
// on CLICKHOUSE_ADDR).
func MustOpenDB(tb testing.TB, addrs ...string) *clickhouse.DB {
	tb.Helper()
	db := NewDB(tb, addrs...)
	ctx := context.Background()
	if _, err := db.Migrate(ctx); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	if err := db.Backfill(ctx, nil); err != nil {
		tb.Fatalf("backfill: %v", err)
	}
	if err := db.Open(ctx); err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// Count runs a count query.
func Count(tb testing.TB, db *clickhouse.DB, query string, args ...any) uint64 {
	tb.Helper()
	var n uint64
	if err := db.Conn().QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}

// dropDatabase drops db's database, through a connection to "default".
func dropDatabase(ctx context.Context, db *clickhouse.DB) error {
	admin := &clickhouse.DB{Addrs: db.Addrs, Database: "default", Username: db.Username, Password: db.Password}
	if err := admin.Open(ctx); err != nil {
		return err
	}
	defer admin.Close()
	drop := "DROP DATABASE IF EXISTS `" + strings.ReplaceAll(db.Database, "`", "\\`") + "`"
	if db.Cluster != "" {
		drop += " ON CLUSTER `" + strings.ReplaceAll(db.Cluster, "`", "\\`") + "`"
	}
	return admin.Conn().Exec(ctx, drop)
}
