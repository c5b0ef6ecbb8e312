package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// loadConsoleBench fills db with deliveries (a fifth payments, the rest
// operations, four per parent, each with its raw body) and findings (two
// versions each, spread over 30 days, every code, three currencies and
// gateways), in SQL: the loading is not what is measured.
func loadConsoleBench(b testing.TB, db *clickhouse.DB, deliveries, findings int) {
	b.Helper()
	ctx := context.Background()
	parents := deliveries / 5
	codes := "['OVER_REFUND','OVER_CAPTURE','PG_SIDE_OPERATION','STALE_AUTHORIZATION','MISSING_OPERATION','CURRENCY_MISMATCH']"
	sevs := "['critical','critical','warning','info','warning','critical']"
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO payment_events (delivery_id, stream_seq, received_at, stored_at, session_id, order_no, reference_number,
			state, result, amount, currency_code, gateway_account, gateway_name, is_sandbox, timestamp_utc, is_terminal, state_rank)
		SELECT concat('p', toString(number)), number, toDateTime('2026-11-01 00:00:00') + number %% 2592000, now(),
			concat('s', toString(number)), concat('o', toString(number)), concat('ref', toString(number)), 'paid', 'success',
			toDecimal128(number %% 1000, 8), ['KWD','SAR','USD'][number %% 3 + 1], ['knet','credit-card','cybersource'][number %% 3 + 1],
			['knet','mpgs','cybersource'][number %% 3 + 1], 0, toDateTime('2026-11-01 00:00:00') + number %% 2592000, 1, 5
		FROM system.numbers LIMIT %d`, parents),
		fmt.Sprintf(`INSERT INTO operation_events (delivery_id, stream_seq, received_at, stored_at, reference_number, session_id,
			child_session_id, operation, source, result, success, amount, txn_amount, txn_currency_code, txn_state, timestamp_utc, is_terminal, state_rank)
		SELECT concat('d', toString(number)), %d + number, toDateTime('2026-11-01 00:00:00') + intDiv(number, 4) %% 2592000 + 60, now(),
			concat('r', toString(number)), concat('s', toString(intDiv(number, 4))), concat('c', toString(number)),
			['capture','capture','refund','void'][number %% 4 + 1], 'ottu', 'success', 1, toDecimal128(10, 8), toDecimal128(10, 8),
			['KWD','SAR','USD'][intDiv(number, 4) %% 3 + 1], ['paid','paid','refunded','voided'][number %% 4 + 1],
			toDateTime('2026-11-01 00:00:00') + intDiv(number, 4) %% 2592000 + 60, 1, 5
		FROM system.numbers LIMIT %d`, parents, deliveries-parents),
		fmt.Sprintf(`INSERT INTO webhooks_raw (delivery_id, kind, stream_seq, received_at, stored_at, signature_scheme, key_index, body)
		SELECT if(number < %d, concat('p', toString(number)), concat('d', toString(number - %d))), if(number < %d, 'payment', 'operation'),
			number, toDateTime('2026-11-01 00:00:00') + number %% 2592000, now(), 'A', 0,
			concat('{"session_id":"s', toString(number), '","customer_email":"buyer@example.com","customer_phone":"+96550000001","amount":"10.000"}')
		FROM system.numbers LIMIT %d`, parents, parents, parents, deliveries),
		fmt.Sprintf(`INSERT INTO findings_log (session_id, code, severity, status, first_seen, last_seen, resolved_at, detail, run_id,
			version, evidence, amount, currency_code, gateway)
		SELECT concat('s', toString(intDiv(number, 2) * 7 %% %d)), %s[intDiv(number, 2) %% 6 + 1],
			CAST(%s[intDiv(number, 2) %% 6 + 1] AS Enum8('info' = 1, 'warning' = 2, 'critical' = 3)),
			CAST(if(number %% 2 = 1 AND intDiv(number, 2) %% 5 = 0, 'resolved', 'open') AS Enum8('open' = 1, 'resolved' = 2)),
			now() - intDiv(number, 2) %% 2592000, now() - intDiv(number, 2) %% 2592000 + number %% 2 * 300,
			if(number %% 2 = 1 AND intDiv(number, 2) %% 5 = 0, now() - intDiv(number, 2) %% 1000000, NULL),
			concat('the rule fired on parent s', toString(intDiv(number, 2) * 7 %% %d), ': amounts and states differ as described here'),
			'run', number + 1, hex(intDiv(number, 2)), toDecimal128(intDiv(number, 2) %% 1000, 8),
			['KWD','SAR','USD'][intDiv(number, 2) %% 3 + 1], ['knet','mpgs','cybersource'][intDiv(number, 2) %% 3 + 1]
		FROM system.numbers LIMIT %d`, parents, codes, sevs, parents, 2*findings),
		fmt.Sprintf(`INSERT INTO finding_actions (session_id, code, action, actor, at, note, evidence, action_id)
		SELECT concat('s', toString(number * 70 %% %d)), %s[number * 10 %% 6 + 1], 'acknowledge', 'ada', now(), '', hex(number * 10),
			toString(number)
		FROM system.numbers LIMIT %d`, parents, codes, findings/100),
	} {
		if err := db.Conn().Exec(ctx, q); err != nil {
			b.Fatalf("load: %v\n%s", err, q)
		}
	}
}

// BenchmarkConsolePages measures the server time of the console's pages
// (the handler, ClickHouse's queries included) against
// OTTU_BENCH_CONSOLE_DELIVERIES deliveries (default 5,000,000) and
// OTTU_BENCH_CONSOLE_FINDINGS findings (default 100,000): ms/page is the
// figure (docs/performance.md, "The console").
func BenchmarkConsolePages(b *testing.B) {
	deliveries := envInt("OTTU_BENCH_CONSOLE_DELIVERIES", 5_000_000)
	findings := envInt("OTTU_BENCH_CONSOLE_FINDINGS", 100_000)
	db := chtest.MustOpenDB(b)
	db.QueryTimeout = 5 * time.Minute
	start := time.Now()
	loadConsoleBench(b, db, deliveries, findings)
	b.Logf("loaded %d deliveries and %d findings in %s", deliveries, findings, time.Since(start).Round(time.Second))
	_ = db.Conn().Exec(context.Background(), "OPTIMIZE TABLE findings_log") // merges what it can; the pages must be fast whatever is left

	users := filepath.Join(b.TempDir(), "users")
	hash, _ := bcrypt.GenerateFromPassword([]byte("bench-password-1"), bcrypt.MinCost)
	if err := os.WriteFile(users, []byte("ada operator "+string(hash)+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	sessions := &memSessions{m: map[string]Session{}}
	token := newToken()
	csrf := newToken()
	loaded, err := LoadUsers(users)
	if err != nil {
		b.Fatal(err)
	}
	ada, _ := loaded.Lookup("ada")
	_ = sessions.Put(context.Background(), sessionKey(token), Session{User: "ada", Role: Operator, CSRF: csrf, Expires: time.Now().Add(time.Hour),
		Credential: ada.Credential()})
	c := &Console{Store: db, UsersFile: users, Sessions: sessions, Log: zerolog.Nop()}
	h := c.Handler()
	get := func(b *testing.B, path string) time.Duration {
		req := httptest.NewRequest("GET", path, nil)
		req.AddCookie(&http.Cookie{Name: "recon_session", Value: token})
		rec := httptest.NewRecorder()
		t0 := time.Now()
		h.ServeHTTP(rec, req)
		d := time.Since(t0)
		if rec.Code != http.StatusOK {
			b.Fatalf("%s: %d %s", path, rec.Code, rec.Body.String())
		}
		return d
	}
	// The first page after start reads every finding; after a pass, the
	// console reads the findings it wrote (here a thousand).
	b.Run("first-load", func(b *testing.B) {
		var total time.Duration
		n := 0
		var heap uint64
		for b.Loop() {
			c.snaps = snapshots{}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			total += get(b, "/")
			runtime.GC()
			runtime.ReadMemStats(&after)
			heap = after.HeapAlloc - min(before.HeapAlloc, after.HeapAlloc)
			n++
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "ms/page")
		b.ReportMetric(float64(heap)/(1<<20), "MB-kept")
	})
	b.Run("after-a-pass-of-1000", func(b *testing.B) {
		get(b, "/") // up to date before measuring
		var total time.Duration
		n := 0
		for b.Loop() {
			b.StopTimer()
			from := uint64(1_000_000_000 + n*1000)
			if err := db.Conn().Exec(context.Background(), `INSERT INTO findings_log (session_id, code, severity, status, first_seen, last_seen,
				detail, run_id, version, evidence, amount, currency_code, gateway)
				SELECT session_id, code, severity, status, first_seen, now(), detail, 'bench', version + `+strconv.FormatUint(from, 10)+`, evidence,
					amount, currency_code, gateway
				FROM findings_log WHERE version <= 1000`); err != nil {
				b.Fatal(err)
			}
			c.Changed(Change{From: from + 1, To: from + 1000}) // as the pass tells every replica
			b.StartTimer()
			total += get(b, "/")
			n++
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "ms/page")
	})
	// An operator acknowledges a selection of 1,000 findings: one
	// action each, in one write (the select page's form, posted).
	b.Run("act-on-a-selection-of-1000", func(b *testing.B) {
		snap, err := c.findings(context.Background())
		if err != nil || len(snap.rows) < 1000 {
			b.Fatalf("%d findings: %v", len(snap.rows), err)
		}
		form := url.Values{"csrf": {csrf}, "action": {"acknowledge"}}
		for _, f := range snap.rows[:1000] {
			form.Add("f", pickValue(f))
		}
		body := form.Encode()
		var total time.Duration
		n := 0
		for b.Loop() {
			req := httptest.NewRequest("POST", "/actions/selection", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.AddCookie(&http.Cookie{Name: "recon_session", Value: token})
			rec := httptest.NewRecorder()
			t0 := time.Now()
			h.ServeHTTP(rec, req)
			total += time.Since(t0)
			if rec.Code != http.StatusSeeOther {
				b.Fatalf("%d %s", rec.Code, rec.Body.String())
			}
			n++
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "ms/action")
	})
	// The yardstick: the open findings' count read through the findings
	// view, which a page per query would pay at least.
	b.Run("view-query", func(b *testing.B) {
		var total time.Duration
		n := 0
		for b.Loop() {
			t0 := time.Now()
			var count uint64
			if err := db.Conn().QueryRow(context.Background(),
				"SELECT count() FROM findings WHERE status = 'open' AND acknowledged_by = ''").Scan(&count); err != nil {
				b.Fatal(err)
			}
			total += time.Since(t0)
			n++
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "ms/query")
	})
	for _, page := range []struct{ name, path string }{
		{"findings", "/"},
		{"findings-filtered", "/?status=all&code=OVER_REFUND&currency=KWD&age=7d"},
		{"findings-search", "/?status=all&q=o7"},
		{"findings-page-100", "/?status=all&page=100"},
		{"payment", "/payments/s7"},
	} {
		b.Run(page.name, func(b *testing.B) {
			get(b, page.path) // up to date before measuring
			var total time.Duration
			n := 0
			for b.Loop() {
				total += get(b, page.path)
				n++
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "ms/page")
		})
	}
}
