package clickhouse_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/schema"
)

// TestLatest pins the SQL copies of "which delivery is the latest" to
// ledger.Rank: the views as the schema leaves them use the store's order
// (text), and that order picks, on ClickHouse, the delivery ledger.Rank picks
// (behaviour), over random pairs of deliveries that tie often, the clock-skew
// boundary included. It fails when either side changes alone.
func TestLatest(t *testing.T) {
	// The views' copies, as the last migration that (re)creates each leaves it.
	migrations, err := schema.Migrations("db")
	if err != nil {
		t.Fatal(err)
	}
	view := regexp.MustCompile("(?s)^CREATE VIEW IF NOT EXISTS `db`\\.(\\w+) AS")
	last := map[string]string{}
	for _, m := range migrations {
		for _, stmt := range m.Statements {
			if v := view.FindStringSubmatch(stmt); v != nil {
				last[v[1]] = stmt
			}
		}
	}
	for _, name := range []string{"payments", "operations"} {
		if !strings.Contains(last[name], clickhouse.LatestOrder) {
			t.Errorf("view %s does not order its deliveries by the store's latest order", name)
		}
	}
	skew := fmt.Sprintf("toUInt32(received_at) + %d,", int(ledger.ClockSkew/time.Second))
	if !strings.Contains(clickhouse.LatestOrder, skew) {
		t.Errorf("latest order %q does not allow ledger.ClockSkew (%s)", clickhouse.LatestOrder, skew)
	}

	// The behaviour, on the server.
	db := chtest.MustOpenDB(t)
	ctx := context.Background()
	if err := db.Conn().Exec(ctx, `CREATE TABLE rank_pin (pair UInt32, id UInt8, timestamp_utc DateTime('UTC'),
		received_at DateTime('UTC'), is_terminal UInt8, state_rank UInt8, stream_seq UInt64) ENGINE = Memory`); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	base := uint32(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).Unix())
	skewSec := uint32(ledger.ClockSkew / time.Second)
	draw := func() ledger.Rank {
		received := base + uint32(rnd.IntN(3))
		ts := base + uint32(rnd.IntN(3))
		if rnd.IntN(3) == 0 { // around the skew boundary
			ts = received + skewSec - 1 + uint32(rnd.IntN(3))
		}
		return ledger.NewRank(ts, received, rnd.IntN(2) == 1, uint8(rnd.IntN(3)), uint64(rnd.IntN(3)))
	}
	const pairs = 2000
	want := make([]uint8, pairs)
	batch, err := db.Conn().PrepareBatch(ctx, "INSERT INTO rank_pin (pair, id, timestamp_utc, received_at, is_terminal, state_rank, stream_seq)")
	if err != nil {
		t.Fatal(err)
	}
	for i := range pairs {
		a, b := draw(), draw()
		if a.Compare(b) == 0 {
			b.Seq++ // identical deliveries have no latest
		}
		want[i] = 1
		if b.Compare(a) > 0 {
			want[i] = 2
		}
		for id, r := range map[uint8]ledger.Rank{1: a, 2: b} {
			if err := batch.Append(uint32(i), id, time.Unix(int64(r.Timestamp), 0), time.Unix(int64(r.Received), 0),
				uint8(b2i(r.Terminal)), r.StateRank, r.Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Conn().Query(ctx, "SELECT pair, argMax(id, "+clickhouse.LatestOrder+") FROM rank_pin GROUP BY pair")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var pair uint32
		var id uint8
		if err := rows.Scan(&pair, &id); err != nil {
			t.Fatal(err)
		}
		if id != want[pair] {
			t.Errorf("pair %d: ClickHouse picks delivery %d, ledger.Rank %d", pair, id, want[pair])
		}
		n++
	}
	if n != pairs {
		t.Fatalf("%d pairs compared, want %d", n, pairs)
	}
}

// TestSQLRules pins the other SQL copies of Go rules: the severity order
// (generated from ledger.SeverityRank) and where an unreadable delivery is
// filed (ledger.UnreadableKey), evaluated by the server.
func TestSQLRules(t *testing.T) {
	db := chtest.MustOpenDB(t)
	ctx := context.Background()
	for _, s := range append(ledger.Severities, "unknown") {
		var got int64
		q := "SELECT toInt64(" + clickhouse.SeverityRankSQL + ") FROM (SELECT ? AS severity)"
		if err := db.Conn().QueryRow(ctx, q, string(s)).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if int(got) != ledger.SeverityRank(s) {
			t.Errorf("severity %s ranks %d in SQL, %d in Go", s, got, ledger.SeverityRank(s))
		}
	}
	for _, tc := range [][3]string{{"s1", "d1", "s1"}, {"", "d1", "d1"}} {
		var got string
		q := "SELECT " + clickhouse.UnreadableKeySQL + " FROM (SELECT ? AS session_id, ? AS delivery_id)"
		if err := db.Conn().QueryRow(ctx, q, tc[0], tc[1]).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := tc[2]; got != want {
			t.Errorf("unreadable (%q, %q) filed under %q in SQL, %q in Go", tc[0], tc[1], got, want)
		}
	}
}

// TestAnchorIndex pins parent_changes' views (schema text) to the store's
// anchors: a delivery is indexed under authorized or refund_queued exactly
// when the store's own query of that anchor would select it.
func TestAnchorIndex(t *testing.T) {
	migrations, err := schema.Migrations("db")
	if err != nil {
		t.Fatal(err)
	}
	var views strings.Builder
	for _, m := range migrations {
		for _, stmt := range m.Statements {
			if strings.Contains(stmt, "TO `db`.parent_changes") {
				views.WriteString(strings.Join(strings.Fields(stmt), " "))
			}
		}
		for _, b := range m.Backfill {
			if strings.Contains(b.Statement, "INTO `db`.parent_changes") {
				views.WriteString(strings.Join(strings.Fields(b.Statement), " "))
			}
		}
	}
	for kind, cond := range clickhouse.AnchorIndexSQL {
		if n := strings.Count(views.String(), cond); n != 2 {
			t.Errorf("anchor %s: %q in %d of parent_changes' view and backfill, want both", kind, cond, n)
		}
	}
}
