//go:build chdb

// The modern-ClickHouse check. Production runs ClickHouse 24.8; the tests'
// server is Debian's 18.16. This test records every statement the product
// sends while it migrates, stores a tricky corpus, runs passes and the
// report, and answers the README's queries on 18.16; then it replays them in
// ClickHouse 26.7 (chDB, in process, compatibility 24.8): the schema
// statements in order, the tables' rows as 18.16 holds them, and every query,
// comparing each answer with 18.16's (decimals as numbers, arrays as sets,
// rows as a set) and each column's type.
//
// It needs libchdb.so (CHDB_LIB_PATH) and the 18.16 server's HTTP address
// (CLICKHOUSE_HTTP_ADDR): `scripts/chdb.sh run scripts/clickhouse.sh run go
// test -tags chdb -run TestModernClickHouse ./internal/clickhouse`, which `make
// test` runs. TZ must be UTC (chDB takes the process's zone).
package clickhouse_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chdb-io/chdb-go/chdb"
	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/schema"
)

// recorder is a slog handler keeping the statements clickhouse-go sends, and
// the external tables the store sends beside them (by name).
type recorder struct {
	mu     sync.Mutex
	stmts  []string
	tables map[string][]string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message == "external table" {
		var name string
		var values []string
		rec.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "name":
				name = a.Value.String()
			case "values":
				values, _ = a.Value.Any().([]string)
			}
			return true
		})
		r.mu.Lock()
		if r.tables == nil {
			r.tables = map[string][]string{}
		}
		r.tables[name] = values
		r.mu.Unlock()
		return nil
	}
	if rec.Message != "sending query" {
		return nil
	}
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "query" {
			r.mu.Lock()
			r.stmts = append(r.stmts, a.Value.String())
			r.mu.Unlock()
		}
		return true
	})
	return nil
}

// statement classes.
var (
	insertHeader = regexp.MustCompile(`(?is)^\s*INSERT\s+INTO\s+([A-Za-z_.` + "`" + `0-9]+)\s*\(([^)]*)\)\s*(VALUES|FORMAT\s+Native)\s*$`)
	isQuery      = regexp.MustCompile(`(?is)^\s*(SELECT|WITH)\b`)
	// The clock or the server itself; or every version of a finding, which
	// the load below (one insert into a ReplacingMergeTree) keeps only the
	// latest of, as merges do in time.
	unstable = regexp.MustCompile(`(?i)\bnow\(\)|\bsystem\.|\bversion\(\)|FROM findings_log WHERE session_id = \S+ ORDER BY version|FROM findings_log WHERE version`)
	external = regexp.MustCompile(`\b_recon_list_\d+\b`)
)

// literal turns the external tables a query names into lists in its text,
// which both servers run without the tables.
func literal(t *testing.T, q string, tables map[string][]string) string {
	return external.ReplaceAllStringFunc(q, func(name string) string {
		values, ok := tables[name]
		if !ok || len(values) == 0 {
			t.Fatalf("query names external table %s, which was not recorded", name)
		}
		quoted := make([]string, len(values))
		for i, v := range values {
			quoted[i] = "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`, "\x00", `\0`).Replace(v) + "'"
		}
		return "(" + strings.Join(quoted, ", ") + ")"
	})
}

func TestModernClickHouse(t *testing.T) {
	if tz := os.Getenv("TZ"); tz != "UTC" {
		t.Fatalf("TZ is %q: run with TZ=UTC (chDB uses the process's time zone)", tz)
	}
	httpAddr := os.Getenv("CLICKHOUSE_HTTP_ADDR")
	if httpAddr == "" {
		t.Fatal("CLICKHOUSE_HTTP_ADDR is not set: run under scripts/clickhouse.sh, which sets it")
	}
	rec := &recorder{}
	db := chtest.NewDB(t)
	db.QueryLog = slog.New(rec)
	ctx := context.Background()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Backfill(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	flow(t, db, time.Now().UTC().Truncate(time.Second))
	rec.mu.Lock()
	stmts, lists := slices.Clone(rec.stmts), rec.tables
	rec.mu.Unlock()
	if len(lists) == 0 {
		t.Fatal("no external table recorded: the flow's incremental pass did not run")
	}

	old := &httpCH{addr: httpAddr, database: db.Database}
	s, err := chdb.NewSession(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	modern := &chdbCH{s: s, database: db.Database}
	if _, err := modern.query("SET compatibility = '24.8'"); err != nil {
		t.Fatal(err)
	}
	v, _ := modern.query("SELECT version(), getSetting('compatibility')")
	t.Logf("modern engine: %s", strings.TrimSpace(v))

	// 1. The schema statements, in order (the migrator's own lookups too).
	var queries []string
	inserts := map[string]string{} // table -> columns, as the product inserts them
	for _, stmt := range stmts {
		switch {
		case insertHeader.MatchString(stmt):
			m := insertHeader.FindStringSubmatch(stmt)
			inserts[strings.Trim(m[1], "`")] = m[2]
		case isQuery.MatchString(stmt):
			queries = append(queries, stmt)
			if strings.Contains(stmt, "system.") { // the migrator's lookups run in order
				if _, err := modern.query(stmt); err != nil {
					t.Errorf("modern: %v\n%s", err, stmt)
				}
			}
		case strings.HasPrefix(strings.TrimSpace(strings.ToUpper(stmt)), "INSERT"):
			// A test helper's INSERT ... SELECT: the rows come with the table below.
		default:
			if _, err := modern.query(stmt); err != nil {
				t.Fatalf("modern: schema statement failed: %v\n%s", err, stmt)
			}
		}
	}
	if len(inserts) < 6 || len(queries) < 20 {
		t.Fatalf("recorded %d inserts and %d queries: the flow did not run", len(inserts), len(queries))
	}

	// 2. The rows, as 18.16 holds them; the product's column lists exist.
	tables, err := old.query("SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree' FORMAT TSV")
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range strings.Fields(tables) {
		cols, err := old.query("SELECT arrayStringConcat(groupArray(concat('`', name, '`')), ', ') FROM system.columns " +
			"WHERE database = currentDatabase() AND table = '" + table + "' AND default_kind NOT IN ('MATERIALIZED', 'ALIAS') FORMAT TSVRaw")
		if err != nil {
			t.Fatal(err)
		}
		cols = strings.TrimSpace(cols)
		data, err := old.query("SELECT " + cols + " FROM " + table + " FORMAT TabSeparated")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := modern.query("INSERT INTO " + table + " (" + cols + ") FORMAT TabSeparated\n" + data); err != nil {
			t.Fatalf("modern: load %s: %v", table, err)
		}
	}
	for table, cols := range inserts {
		if _, err := modern.query("SELECT " + cols + " FROM " + table + " LIMIT 0"); err != nil {
			t.Errorf("modern: the product's INSERT INTO %s (%s) names what the table lacks: %v", table, cols, err)
		}
	}
	// The backfills (the flow's database was empty when it ran them), on
	// every partition the rows fill: they run, and fill the indexes as
	// their views did (what 18.16's views wrote is among the rows above).
	migrations, err := schema.Migrations(db.Database)
	if err != nil {
		t.Fatal(err)
	}
	backfilled := 0
	for _, m := range migrations {
		for _, b := range m.Backfill {
			parts, err := old.query("SELECT DISTINCT toYYYYMM(received_at) FROM " + b.Source + " FORMAT TSV")
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range strings.Fields(parts) {
				n, _ := strconv.ParseUint(p, 10, 32)
				if _, err := modern.query(b.Partition(uint32(n))); err != nil {
					t.Errorf("modern: backfill of %s: %v\n%s", m.Name, err, b.Statement)
				}
				backfilled++
			}
		}
	}
	if backfilled == 0 {
		t.Fatal("no backfill statement ran")
	}
	for _, q := range []string{
		"SELECT count() FROM (SELECT DISTINCT * FROM parent_changes)",
		"SELECT count() FROM (SELECT DISTINCT * FROM parent_keys)",
	} {
		want, err := old.json(q)
		if err != nil {
			t.Fatal(err)
		}
		got, err := modern.json(q)
		if err != nil {
			t.Fatal(err)
		}
		if d := differ(want, got); d != "" {
			t.Errorf("after the backfills: %s\n%s", d, q)
		}
	}

	// 3. Every query: it runs, and gives 18.16's answer.
	seen := map[string]bool{}
	compared := 0
	for _, q := range queries {
		if seen[q] || strings.Contains(q, "system.") {
			continue
		}
		seen[q] = true
		q = literal(t, q, lists)
		got, err := modern.json(q)
		if err != nil {
			t.Errorf("modern: %v\n%s", err, q)
			continue
		}
		if unstable.MatchString(q) {
			continue // the clock or the server itself: runs, nothing to compare
		}
		want, err := old.json(q)
		if err != nil {
			t.Fatalf("18.16: %v\n%s", err, q)
		}
		if d := differ(want, got); d != "" {
			t.Errorf("answers differ: %s\n%s", d, q)
		}
		compared++
	}
	t.Logf("%d statements recorded; %d distinct queries run on ClickHouse 26.7, %d compared with 18.16", len(stmts), len(seen), compared)
}

// result is a FORMAT JSONCompact answer.
type result struct {
	Meta []struct{ Name, Type string } `json:"meta"`
	Data [][]any                       `json:"data"`
}

func parse(text string) (result, error) {
	var r result
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	return r, dec.Decode(&r)
}

// differ compares two answers: the column types position by position, the
// rows as a set, decimals numerically and arrays as sets.
func differ(a, b result) string {
	if len(a.Meta) != len(b.Meta) {
		return fmt.Sprintf("%d columns vs %d", len(a.Meta), len(b.Meta))
	}
	for i := range a.Meta {
		if a.Meta[i].Type != b.Meta[i].Type {
			return fmt.Sprintf("column %d (%s) is %s on 18.16, %s on 26.7", i+1, a.Meta[i].Name, a.Meta[i].Type, b.Meta[i].Type)
		}
	}
	rows := func(r result) []string {
		out := make([]string, len(r.Data))
		for i, row := range r.Data {
			out[i] = canon(row)
		}
		slices.Sort(out)
		return out
	}
	ra, rb := rows(a), rows(b)
	if !slices.Equal(ra, rb) {
		return fmt.Sprintf("rows\n  18.16: %v\n  26.7:  %v", ra, rb)
	}
	return ""
}

// canon renders a value with numbers (and numeric text: decimals come as
// either) in canonical form and arrays sorted.
func canon(v any) string {
	switch x := v.(type) {
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = canon(e)
		}
		slices.Sort(parts)
		return "[" + strings.Join(parts, ",") + "]"
	case json.Number:
		return canonNumber(x.String())
	case string:
		return canonNumber(x)
	case nil:
		return "NULL"
	}
	return fmt.Sprint(v)
}

func canonNumber(s string) string {
	if d, err := decimal.NewFromString(s); err == nil && s != "" && !strings.ContainsAny(s, "eE") {
		return d.String()
	}
	return fmt.Sprintf("%q", s)
}

// httpCH runs statements on the 18.16 server over HTTP.
type httpCH struct {
	addr, database string
}

func (h *httpCH) query(q string) (string, error) {
	u := "http://" + h.addr + "/?database=" + url.QueryEscape(h.database)
	resp, err := http.Post(u, "text/plain", strings.NewReader(q))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

func (h *httpCH) json(q string) (result, error) {
	text, err := h.query(q + "\nFORMAT JSONCompact")
	if err != nil {
		return result{}, err
	}
	return parse(text)
}

// chdbCH runs statements in the in-process ClickHouse 26.7.
type chdbCH struct {
	s        *chdb.Session
	database string
	created  bool
}

func (c *chdbCH) query(q string) (string, error) {
	if !c.created {
		c.created = true
		if _, err := c.query("CREATE DATABASE IF NOT EXISTS `" + c.database + "`"); err != nil {
			return "", err
		}
		if _, err := c.query("USE `" + c.database + "`"); err != nil {
			return "", err
		}
	}
	r, err := c.s.Query(q, "TabSeparated")
	if err != nil {
		return "", err
	}
	defer r.Free()
	if e := r.Error(); e != nil {
		return "", e
	}
	return string(r.Buf()), nil
}

func (c *chdbCH) json(q string) (result, error) {
	text, err := c.query(q + "\nFORMAT JSONCompact")
	if err != nil {
		return result{}, err
	}
	return parse(text)
}
