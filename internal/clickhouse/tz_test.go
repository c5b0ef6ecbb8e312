package clickhouse_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
)

// TestTimeZone: a pass, the report and the views give the same days and the
// same rows with the ClickHouse server in Asia/Kuwait (UTC+3) as in UTC. The
// history sits just before midnight UTC, so every day it shows would move by
// one if a time were turned into a day in the server's zone.
func TestTimeZone(t *testing.T) {
	now := time.Date(2026, 11, 29, 22, 40, 0, 0, time.UTC)
	utc := outcome(t, chtest.MustOpenDB(t), now) // the suite's server runs in UTC
	kuwait := outcome(t, chtest.MustOpenDB(t, chtest.StartServer(t, "Asia/Kuwait").Addr), now)
	if utc != kuwait {
		t.Fatalf("results differ with the server in Asia/Kuwait:\n--- UTC\n%s\n--- Asia/Kuwait\n%s", utc, kuwait)
	}
	if !strings.Contains(utc, "2026-11-29") {
		t.Fatalf("no day 2026-11-29 in the outcome: %s", utc)
	}
}

// outcome runs the flow on db and renders what users see: findings, the
// report and the views, as ClickHouse itself renders their times.
func outcome(t *testing.T, db *clickhouse.DB, now time.Time) string {
	flow(t, db, now)
	var b strings.Builder
	r, err := (&clickhouse.Store{DB: db}).Report(context.Background(), now.Add(-30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r.LastRun = nil // its run id is random
	js, _ := json.Marshal(r)
	b.Write(js)
	b.WriteByte('\n')
	for _, q := range []string{
		"SELECT session_id, code, toString(status), detail, toString(first_seen), toString(toDate(first_seen)) FROM findings ORDER BY session_id, code",
		"SELECT session_id, state, toString(timestamp_utc), toString(toDate(timestamp_utc)), toString(received_at), toString(toDate(received_at)) FROM payments ORDER BY session_id",
		"SELECT reference_number, txn_state, toString(timestamp_utc), toString(toDate(timestamp_utc)), toString(received_at) FROM operations ORDER BY reference_number",
	} {
		rows, err := db.Conn().Query(context.Background(), q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for rows.Next() {
			cols := make([]string, len(rows.Columns()))
			ptrs := make([]any, len(cols))
			for i := range cols {
				ptrs[i] = &cols[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&b, strings.Join(cols, " | "))
		}
		rows.Close()
	}
	return b.String()
}
