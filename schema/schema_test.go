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
