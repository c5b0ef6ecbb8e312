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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chdb-io/chdb-go/chdb"
	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// recorder is a slog handler keeping the statements clickhouse-go sends.
type recorder struct {
	mu    sync.Mutex
	stmts []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
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

func body(tb testing.TB, kind events.Kind, m map[string]any, received time.Time) events.StreamMessage {
	tb.Helper()
	b, _ := json.Marshal(m)
	obj, err := events.ParseObject(b)
	if err != nil {
		tb.Fatal(err)
	}
	msg := events.StreamMessage{Envelope: events.Envelope{ID: events.DeliveryID(kind, obj), Kind: kind, ReceivedAt: received,
		Scheme: events.SchemeA, Body: b}}
	seq++
	msg.StreamSeq = seq
	w, err := events.DecodeObject(obj)
	if err != nil {
		u := events.Salvage(obj, err)
		msg.Unreadable = &u
		return msg
	}
	msg.Webhook = w
	return msg
}

// corpus is a small history with every shape the queries must handle.
func corpus(tb testing.TB, now time.Time) []events.StreamMessage {
	ts := func(d time.Duration) string { return now.Add(d).Format("2006-01-02 15:04:05") }
	at := func(d time.Duration) time.Time { return now.Add(d) }
	pay := func(session, state string, extra map[string]any) map[string]any {
		m := map[string]any{"session_id": session, "state": state, "result": "success", "amount": "25.500",
			"currency_code": "KWD", "order_no": "o-" + session, "reference_number": "r-" + session, "gateway_account": "cc"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	op := func(session, ref, kind, state, amount string, extra map[string]any) map[string]any {
		m := map[string]any{"session_id": session, "reference_number": ref, "operation": kind, "source": "input",
			"amount": amount, "result": "success", "pg_code": "cc",
			"txn": map[string]any{"amount": amount, "currency_code": "KWD", "session_id": "c-" + ref, "state": state}}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	const P, O = events.KindPayment, events.KindOperation
	return []events.StreamMessage{
		// Out-of-order states: paid arrives before the pending it supersedes; failed later paid.
		body(tb, P, pay("s-order", "paid", map[string]any{"timestamp_utc": ts(-50 * time.Minute)}), at(-49*time.Minute)),
		body(tb, P, pay("s-order", "pending", map[string]any{"timestamp_utc": ts(-55 * time.Minute)}), at(-40*time.Minute)),
		body(tb, P, pay("s-late", "failed", map[string]any{"timestamp_utc": ts(-3 * time.Hour)}), at(-3*time.Hour)),
		body(tb, P, pay("s-late", "paid", map[string]any{"timestamp_utc": ts(-2 * time.Hour)}), at(-2*time.Hour)),
		// Nullable decimals: totals present, then absent in the latest webhook; children listed.
		body(tb, P, pay("s-null", "paid", map[string]any{"timestamp_utc": ts(-30 * time.Hour), "refunded_amount": "5.000",
			"transactions": []any{map[string]any{"session_id": "c-r1", "state": "refunded", "amount": "5.000", "currency_code": "KWD"},
				map[string]any{"session_id": "c-missing", "state": "refunded", "amount": "1.000", "currency_code": "KWD"}}}), at(-30*time.Hour)),
		body(tb, P, pay("s-null", "paid", map[string]any{"timestamp_utc": ts(-29 * time.Hour), "amount": nil}), at(-29*time.Hour)),
		body(tb, O, op("s-null", "r1", "refund", "refunded", "5.000", map[string]any{"timestamp_utc": ts(-30 * time.Hour)}), at(-30*time.Hour)),
		// The largest amount the store holds, and a refund over it.
		body(tb, P, pay("s-max", "paid", map[string]any{"amount": "999999999999999999999999999999.99999999", "timestamp_utc": ts(-2 * time.Hour)}), at(-2*time.Hour)),
		body(tb, O, op("s-max", "r-max", "refund", "refunded", "999999999999999999999999999999.99999999", map[string]any{"timestamp_utc": ts(-time.Hour)}), at(-time.Hour)),
		// A queued refund, completed; another stuck for days; null operation and amount.
		body(tb, P, pay("s-q", "paid", map[string]any{"timestamp_utc": ts(-100 * time.Hour)}), at(-100*time.Hour)),
		body(tb, O, op("s-q", "rq", "refund", "refund_queued", "2.000", map[string]any{"timestamp_utc": ts(-90 * time.Hour)}), at(-90*time.Hour)),
		body(tb, O, op("s-q", "rq", "refund", "refunded", "2.000", map[string]any{"timestamp_utc": ts(-80 * time.Hour)}), at(-80*time.Hour)),
		body(tb, O, op("s-q", "rq2", "refund", "refund_queued", "1.000", map[string]any{"timestamp_utc": ts(-72 * time.Hour)}), at(-72*time.Hour)),
		body(tb, O, op("s-q", "rnull", "", "refunded", "", map[string]any{"operation": nil, "amount": nil, "timestamp_utc": ts(-70 * time.Hour)}), at(-70*time.Hour)),
		// Conflicting duplicate, pg-side void on an authorization, capture in another currency.
		body(tb, P, pay("s-auth", "authorized", map[string]any{"timestamp_utc": ts(-200 * time.Hour)}), at(-200*time.Hour)),
		body(tb, O, op("s-auth", "v1", "void", "voided", "25.500", map[string]any{"source": "pg", "timestamp_utc": ts(-3 * time.Hour)}), at(-3*time.Hour)),
		body(tb, O, op("s-auth", "c1", "capture", "paid", "10.000", map[string]any{"timestamp_utc": ts(-2 * time.Hour)}), at(-2*time.Hour)),
		body(tb, O, op("s-auth", "c1", "capture", "paid", "11.000", map[string]any{"timestamp_utc": ts(-time.Hour)}), at(-time.Hour)),
		// An orphan, a sandbox webhook, delimiters in text.
		body(tb, O, op("s-orphan", "or1", "refund", "refunded", "1", map[string]any{"timestamp_utc": ts(-5 * time.Hour)}), at(-5*time.Hour)),
		body(tb, P, pay("s-sandbox", "paid", map[string]any{"is_sandbox": true, "timestamp_utc": ts(-4 * time.Hour)}), at(-4*time.Hour)),
		body(tb, P, pay("s-odd|'\"\n", "paid", map[string]any{"order_no": "a|b", "gateway_account": "x\x00y", "timestamp_utc": ts(-4 * time.Hour)}), at(-4*time.Hour)),
		// Unreadable: negative amount, no session_id.
		body(tb, P, pay("s-neg", "paid", map[string]any{"amount": "-1"}), at(-time.Hour)),
		body(tb, P, map[string]any{"state": "paid", "amount": "1"}, at(-time.Hour)),
		// A delivery ingest refused.
		{Envelope: events.Envelope{ID: "rej-1", ReceivedAt: at(-time.Hour), Reject: "bad_signature: x", Body: []byte(`{"x":1}`)}},
	}
}

// flow is what the product does with ClickHouse, end to end.
func flow(t *testing.T, db *clickhouse.DB, now time.Time) {
	ctx := context.Background()
	w := &clickhouse.Writer{DB: db}
	if _, err := w.Write(ctx, corpus(t, now)); err != nil {
		t.Fatal(err)
	}
	if err := db.Conn().Exec(ctx, "INSERT INTO merchant_orders (order_no, amount, currency_code) SELECT 'o-s-order', toDecimal128('26', 8), 'KWD'"); err != nil {
		t.Fatal(err)
	}
	store := &clickhouse.Store{DB: db}
	cfg := ledger.Config{Grace: 10 * time.Minute, StaleAuthorization: 168 * time.Hour, StuckRefund: 48 * time.Hour, Live: true}
	clock := now
	r := &ledger.Reconciler{Store: store, Config: cfg, Now: func() time.Time { return clock }, FullEvery: 24 * time.Hour,
		OnParentError: func(s string, err error) { t.Errorf("parent %s: %v", s, err) }}
	for i := range 2 { // a full pass, then an incremental one with every window
		rep, err := r.Run(ctx)
		if err != nil || rep.ParentsFailed != 0 {
			t.Fatalf("pass %d on 18.16: %+v %v", i+1, rep, err)
		}
		clock = clock.Add(5 * time.Minute)
	}
	if _, err := store.Report(ctx, now.Add(-30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// The README's queries.
	for _, q := range []string{
		"SELECT currency_code, gateway_account, count() AS payments, sum(amount) AS paid FROM payments WHERE state = 'paid' GROUP BY currency_code, gateway_account",
		"SELECT * FROM payments WHERE session_id = 's-null'",
		"SELECT reference_number, operation, source, txn_amount, txn_currency_code, txn_state, timestamp_utc FROM operations WHERE session_id = 's-q' ORDER BY timestamp_utc",
		"SELECT severity, code, session_id, detail, first_seen FROM findings WHERE status = 'open' ORDER BY severity DESC, first_seen",
		"SELECT received_at, session_id, field, reason, body FROM unreadable_webhooks ORDER BY received_at DESC LIMIT 20",
		"SELECT received_at, reason, substring(body, 1, 200) FROM rejected_webhooks ORDER BY received_at DESC LIMIT 20",
	} {
		rows, err := db.Conn().Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		rows.Close()
	}
}

// statement classes.
var (
	insertHeader = regexp.MustCompile(`(?is)^\s*INSERT\s+INTO\s+([A-Za-z_.` + "`" + `0-9]+)\s*\(([^)]*)\)\s*(VALUES|FORMAT\s+Native)\s*$`)
	isQuery      = regexp.MustCompile(`(?is)^\s*(SELECT|WITH)\b`)
	unstable     = regexp.MustCompile(`(?i)\bnow\(\)|\bsystem\.|\bversion\(\)`)
)

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
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	flow(t, db, time.Now().UTC().Truncate(time.Second))
	rec.mu.Lock()
	stmts := slices.Clone(rec.stmts)
	rec.mu.Unlock()

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

	// 3. Every query: it runs, and gives 18.16's answer.
	seen := map[string]bool{}
	compared := 0
	for _, q := range queries {
		if seen[q] || strings.Contains(q, "system.") {
			continue
		}
		seen[q] = true
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
