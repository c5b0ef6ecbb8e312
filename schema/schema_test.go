package schema

import (
	"regexp"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	got := split("-- a comment\nCREATE TABLE a (x String);\n\n-- another\nCREATE VIEW {db}.v AS\nSELECT 1;\nSELECT 2")
	want := []string{"CREATE TABLE a (x String)", "CREATE VIEW {db}.v AS\nSELECT 1", "SELECT 2"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("statement %d: got %q, want %q", i, got[i], want[i])
		}
	}
}

func TestMigrations(t *testing.T) {
	ms, err := Migrations("my`db")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 2 || ms[0].Version != 1 || ms[1].Version != 2 {
		t.Fatalf("versions: %+v", ms)
	}
	for _, m := range ms {
		for _, s := range m.Statements {
			if strings.Contains(s, "{db}") {
				t.Fatalf("%s: {db} left in %q", m.Name, s)
			}
			if strings.HasPrefix(s, "CREATE") && !strings.Contains(s, "IF NOT EXISTS") {
				t.Fatalf("%s: not idempotent: %q", m.Name, s)
			}
			if _, _, ok := AddColumn(s); strings.HasPrefix(s, "ALTER") && !ok && !modifyColumn.MatchString(s) {
				t.Fatalf("%s: an ALTER the migrator cannot re-run: %q", m.Name, s)
			}
			if strings.HasPrefix(s, "DROP") && !strings.Contains(s, "IF EXISTS") {
				t.Fatalf("%s: not idempotent: %q", m.Name, s)
			}
			if strings.Contains(s, "VIEW") && !strings.Contains(s, "`my\\`db`.") {
				t.Fatalf("%s: view does not name its database: %q", m.Name, s)
			}
		}
	}
}

// modifyColumn is an ALTER that is idempotent as it is.
var modifyColumn = regexp.MustCompile(`^ALTER TABLE [a-z_]+ MODIFY COLUMN `)

func TestAddColumn(t *testing.T) {
	for _, tc := range []struct {
		stmt          string
		table, column string
		ok            bool
	}{
		{"ALTER TABLE payment_events ADD COLUMN stored_at DateTime DEFAULT received_at", "payment_events", "stored_at", true},
		{"alter table t\n  add column c UInt8", "t", "c", true},
		{"ALTER TABLE t DROP COLUMN c", "", "", false},
		{"CREATE TABLE IF NOT EXISTS t (c UInt8)", "", "", false},
	} {
		table, column, ok := AddColumn(tc.stmt)
		if table != tc.table || column != tc.column || ok != tc.ok {
			t.Errorf("AddColumn(%q) = %q, %q, %v; want %q, %q, %v", tc.stmt, table, column, ok, tc.table, tc.column, tc.ok)
		}
	}
}

func TestOnCluster(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"CREATE TABLE IF NOT EXISTS webhooks_raw (\n    delivery_id String\n) ENGINE = ReplacingMergeTree\nORDER BY delivery_id",
			"CREATE TABLE IF NOT EXISTS webhooks_raw ON CLUSTER `c1` (\n    delivery_id String\n) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/webhooks_raw', '{replica}')\nORDER BY delivery_id"},
		{"CREATE TABLE IF NOT EXISTS findings_log (v UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY v",
			"CREATE TABLE IF NOT EXISTS findings_log ON CLUSTER `c1` (v UInt64) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/findings_log', '{replica}', version) ORDER BY v"},
		{"CREATE TABLE IF NOT EXISTS recon_runs (x UInt8) ENGINE = MergeTree ORDER BY x",
			"CREATE TABLE IF NOT EXISTS recon_runs ON CLUSTER `c1` (x UInt8) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/recon_runs', '{replica}') ORDER BY x"},
		{"CREATE VIEW IF NOT EXISTS `db`.payments AS\nSELECT 1", "CREATE VIEW IF NOT EXISTS `db`.payments ON CLUSTER `c1` AS\nSELECT 1"},
		{"ALTER TABLE payment_events ADD COLUMN stored_at DateTime", "ALTER TABLE payment_events ON CLUSTER `c1` ADD COLUMN stored_at DateTime"},
		{"DROP TABLE IF EXISTS `db`.findings", "DROP TABLE IF EXISTS `db`.findings ON CLUSTER `c1`"},
		{"OPTIMIZE TABLE merchant_orders FINAL", "OPTIMIZE TABLE merchant_orders FINAL"},
	} {
		if got := OnCluster(tc.in, "c1", "db"); got != tc.want {
			t.Errorf("OnCluster(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
	// Every statement of every file is either rewritten or one that needs no rewriting.
	ms, err := Migrations("db")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		for _, s := range m.Statements {
			got := OnCluster(s, "c1", "db")
			if got == s && !strings.HasPrefix(s, "OPTIMIZE") {
				t.Errorf("%s: not rewritten for a cluster: %q", m.Name, s)
			}
			if strings.Contains(got, "ENGINE = ") && !strings.Contains(got, "ENGINE = Replicated") {
				t.Errorf("%s: a table that is not replicated: %q", m.Name, got)
			}
		}
	}
}

func TestQualify(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = MergeTree ORDER BY x", "CREATE TABLE IF NOT EXISTS `db`.t (x UInt8) ENGINE = MergeTree ORDER BY x"},
		{"ALTER TABLE t ADD COLUMN c UInt8", "ALTER TABLE `db`.t ADD COLUMN c UInt8"},
		{"OPTIMIZE TABLE t FINAL", "OPTIMIZE TABLE `db`.t FINAL"},
		{"CREATE VIEW IF NOT EXISTS `db`.v AS SELECT 1", "CREATE VIEW IF NOT EXISTS `db`.v AS SELECT 1"},
	} {
		if got := Qualify(tc.in, "db"); got != tc.want {
			t.Errorf("Qualify(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := OnCluster(Qualify("CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = MergeTree ORDER BY x", "db"), "c", "db"); !strings.Contains(got, "/clickhouse/tables/{shard}/db/t'") {
		t.Errorf("replication path of a qualified table: %q", got)
	}
}

// TestBackfills pins each backfill statement to a materialized view of its
// migration: the same SELECT into the same table, with only the partition's
// condition added, so that the rows stored before the view existed are
// indexed exactly as the view indexes the rows stored after.
func TestBackfills(t *testing.T) {
	ms, err := Migrations("db")
	if err != nil {
		t.Fatal(err)
	}
	mv := regexp.MustCompile(`(?s)^CREATE MATERIALIZED VIEW IF NOT EXISTS \S+ TO (\S+) AS\s+(.*)$`)
	insert := regexp.MustCompile(`(?s)^INSERT INTO (\S+) \([^)]*\)\s+(.*)$`)
	partition := regexp.MustCompile(`\s*(WHERE|AND) toYYYYMM\(received_at\) = \{partition\}$`)
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	found := 0
	for _, m := range ms {
		views := map[string]bool{}
		for _, s := range m.Statements {
			if v := mv.FindStringSubmatch(s); v != nil {
				views[v[1]+" "+norm(v[2])] = true
			}
		}
		if len(views) > 0 && len(m.Backfill) != len(views) {
			t.Errorf("%s: %d materialized views, %d backfill statements", m.Name, len(views), len(m.Backfill))
		}
		for _, b := range m.Backfill {
			found++
			in := insert.FindStringSubmatch(b.Statement)
			if in == nil {
				t.Errorf("%s: backfill is not an INSERT ... SELECT: %q", m.Name, b.Statement)
				continue
			}
			sel := partition.ReplaceAllString(in[2], "") // a view's own WHERE stays
			if sel == in[2] {
				t.Errorf("%s: backfill does not end with its partition's condition: %q", m.Name, b.Statement)
			}
			if !views[in[1]+" "+norm(sel)] {
				t.Errorf("%s: backfill into %s is no view's SELECT:\n%s", m.Name, in[1], norm(sel))
			}
			if got := b.Partition(202611); strings.Contains(got, "{partition}") || !strings.Contains(got, "= 202611") {
				t.Errorf("%s: partition not substituted: %q", m.Name, got)
			}
		}
	}
	if found == 0 {
		t.Fatal("no backfill statements")
	}
}
