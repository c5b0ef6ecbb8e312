package clickhouse_test

import (
	"context"
	"testing"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
)

func TestDB_Migrate(t *testing.T) {
	db := chtest.NewDB(t)
	ctx := context.Background()
	first, err := db.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !first.CreatedDatabase || len(first.Applied) == 0 {
		t.Fatalf("first run: got %+v, want the database created and files applied", first)
	}
	second, err := db.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.CreatedDatabase || len(second.Applied) != 0 {
		t.Fatalf("second run: got %+v, want a no-op", second)
	}
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, name := range []string{"webhooks_raw", "payment_events", "operation_events", "payments", "operations",
		"rejected_webhooks", "merchant_orders", "schema_migrations"} {
		if n := chtest.Count(t, db, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", db.Database, name); n != 1 {
			t.Errorf("table or view %s missing", name)
		}
	}
	if n := chtest.Count(t, db, "SELECT count() FROM schema_migrations"); n != uint64(len(first.Applied)) {
		t.Fatalf("schema_migrations rows: got %d, want %d", n, len(first.Applied))
	}
}
