package clickhouse_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// BenchmarkWriter_10k measures the sink: one Write of a 10,000-webhook batch
// (half payments, half operations, realistic ~1 KB bodies) into ClickHouse,
// including the existence check. It reports webhooks/s.
//
//	scripts/clickhouse.sh run go test -run='^$' -bench=Writer_10k -benchtime=5x ./internal/clickhouse
func BenchmarkWriter_10k(b *testing.B) {
	db := chtest.MustOpenDB(b)
	w := &clickhouse.Writer{DB: db}
	const size = 10000
	round := 0
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		round++
		batch := make([]events.StreamMessage, 0, size)
		for i := range size / 2 {
			s := fmt.Sprintf("b%d-%06d", round, i)
			p := paymentObj(s, "paid", "2026-05-14 10:00:00")
			p["gateway_response"] = map[string]any{"result": "SUCCESS", "order": map[string]any{"id": s, "amount": 25.5}, "pad": fmt.Sprintf("%0600d", i)}
			batch = append(batch, message(b, p), message(b, operationObj("op-"+s, s, "refunded", "2026-05-14 11:00:00")))
		}
		b.StartTimer()
		start := time.Now()
		res, err := w.Write(context.Background(), batch, nil)
		elapsed += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if res.Payments+res.Operations != size {
			b.Fatalf("stored %d, want %d", res.Payments+res.Operations, size)
		}
	}
	b.ReportMetric(float64(size*round)/elapsed.Seconds(), "webhooks/s")
}

// BenchmarkPass measures a full reconciliation pass over N parents with three
// operations each (an authorization, two partial captures and a refund of
// part of them; one parent in 50 has an anomaly). N comes from
// OTTU_BENCH_PARENTS (comma-separated; default 10000):
//
//	OTTU_BENCH_PARENTS=10000,100000 scripts/clickhouse.sh run \
//	  go test -run='^$' -bench=Pass -benchtime=3x -timeout=30m ./internal/clickhouse
func BenchmarkPass(b *testing.B) {
	sizes := os.Getenv("OTTU_BENCH_PARENTS")
	if sizes == "" {
		sizes = "10000"
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			b.Fatalf("OTTU_BENCH_PARENTS: %v", err)
		}
		b.Run(fmt.Sprintf("parents=%d", n), func(b *testing.B) { benchmarkPass(b, n) })
	}
}

func benchmarkPass(b *testing.B, n int) {
	db := chtest.MustOpenDB(b)
	loadParents(b, db, n)
	r := &ledger.Reconciler{Store: fullPasses{&clickhouse.Store{DB: db}},
		Config: ledger.Config{Grace: 10 * time.Minute, StaleAuthorization: 168 * time.Hour, StuckRefund: 48 * time.Hour, Live: true}}
	var rep ledger.Run
	var total time.Duration
	passes := 0
	for b.Loop() {
		start := time.Now()
		var err error
		if rep, err = r.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		passes++
	}
	if rep.ParentsEvaluated != n || rep.Open != n/50 {
		b.Fatalf("pass evaluated %d parents with %d open findings, want %d and %d", rep.ParentsEvaluated, rep.Open, n, n/50)
	}
	b.ReportMetric(float64(n)*float64(passes)/total.Seconds(), "parents/s")
}

// loadParents writes n parents, 3n operations, straight through the Writer.
func loadParents(b *testing.B, db *clickhouse.DB, n int) {
	b.Helper()
	w := &clickhouse.Writer{DB: db}
	at := time.Now().UTC().Add(-2 * time.Hour)
	var seq uint64
	msg := func(wh *events.Webhook, id string) events.StreamMessage {
		seq++
		return events.StreamMessage{Envelope: events.Envelope{ID: id, Kind: wh.Kind, ReceivedAt: at, Body: []byte(`{}`)},
			StreamSeq: seq, Webhook: wh}
	}
	const chunk = 20000
	batch := make([]events.StreamMessage, 0, chunk+4)
	for i := range n {
		s := fmt.Sprintf("%040d", i)
		amount := amt("40.000")
		batch = append(batch, msg(&events.Webhook{Kind: events.KindPayment, Payment: &events.Payment{
			SessionID: s, OrderNo: "o" + s, State: "authorized", Result: "success", Amount: amount, CurrencyCode: "KWD",
			GatewayAccount: "credit-card", GatewayName: "mpgs", Timestamp: at}}, "p"+s))
		captureB := "30.000"
		if i%50 == 0 {
			captureB = "35.000" // over-capture: 10 + 35 > 40
		}
		for j, o := range []struct{ kind, state, amount string }{
			{"capture", "paid", "10.000"}, {"capture", "paid", captureB}, {"refund", "refunded", "5.000"},
		} {
			ref := fmt.Sprintf("r%s-%d", s, j)
			batch = append(batch, msg(&events.Webhook{Kind: events.KindOperation, Operation: &events.Operation{
				ReferenceNumber: ref, SessionID: s, Operation: o.kind, Source: "input", Result: "success", Success: true,
				Amount: amt(o.amount), Timestamp: at,
				Txn: events.Txn{SessionID: "c" + ref, State: o.state, Amount: amt(o.amount), CurrencyCode: "KWD"}}}, ref))
		}
		if len(batch) >= chunk || i == n-1 {
			if _, err := w.Write(context.Background(), batch, nil); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// fullPasses makes every pass a full one: no last run.
type fullPasses struct{ *clickhouse.Store }

func (fullPasses) LastPass(context.Context) (ledger.LastPass, bool, error) {
	return ledger.LastPass{}, false, nil
}

// BenchmarkLookup reads one payment by session_id from the payments view,
// one operation by reference_number and the operations of one parent from
// the operations view, and chooses whom to ask Ottu about, over a
// synthetic history of OTTU_BENCH_DELIVERIES payment deliveries (default
// 2,000,000; two per parent) and as many operation deliveries, loaded inside
// ClickHouse. On 18.16 the filter reaches the table with
// enable_optimize_predicate_expression=1 (the default on ClickHouse 20+).
//
//	scripts/clickhouse.sh run go test -run '^$' -bench Lookup -benchtime 20x ./internal/clickhouse
func BenchmarkLookup(b *testing.B) {
	n := benchSize("OTTU_BENCH_DELIVERIES", 2_000_000)
	db := chtest.MustOpenDB(b)
	ctx := context.Background()
	start := time.Now()
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO payment_events (delivery_id, stream_seq, received_at, stored_at, session_id, order_no,
			reference_number, state, result, amount, currency_code, gateway_account, gateway_name, payment_type, is_sandbox,
			timestamp_utc, is_terminal, state_rank, child_session_ids, child_states, child_amounts, child_currency_codes)
			SELECT concat('p', toString(number)), number, toDateTime(1700000000 + number), now(), concat('s', toString(intDiv(number, 2))),
			'', concat('r', toString(number)), if(number %% 2 = 0, 'pending', 'paid'), 'success', toDecimal128(number %% 1000, 8), 'KWD',
			'cc', 'mpgs', 'one_off', 0, toDateTime(1700000000 + number), number %% 2, 2, [], [], [], []
			FROM system.numbers LIMIT %d`, n),
		fmt.Sprintf(`INSERT INTO operation_events (delivery_id, stream_seq, received_at, stored_at, reference_number, session_id,
			order_no, child_session_id, operation, source, result, success, pg_code, amount, txn_amount, txn_currency_code, txn_state,
			is_sandbox, timestamp_utc, is_terminal, state_rank)
			SELECT concat('o', toString(number)), number, toDateTime(1700000000 + number), now(), concat('op', toString(intDiv(number, 2))),
			concat('s', toString(intDiv(number, 4))), '', concat('c', toString(number)), 'refund', 'input', 'success', 1, 'cc',
			toDecimal128(1, 8), toDecimal128(1, 8), 'KWD', if(number %% 2 = 0, 'refund_queued', 'refunded'), 0,
			toDateTime(1700000000 + number), number %% 2, 1
			FROM system.numbers LIMIT %d`, n),
	} {
		if err := db.Conn().Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("loaded %d payment and %d operation deliveries in %s", n, n, time.Since(start).Round(time.Millisecond))
	pushdown := ch.Context(ctx, ch.WithSettings(ch.Settings{"enable_optimize_predicate_expression": 1}))
	b.Run("inquiry-candidates", func(b *testing.B) {
		// Whom a pass asks Ottu about, over the whole history (OTTU_API_URL set).
		store := &clickhouse.Store{DB: db}
		for b.Loop() {
			now := time.Now().UTC()
			if _, err := store.InquiryCandidates(ctx, ledger.InquiryQuery{Codes: []ledger.Code{ledger.OverRefund, ledger.MissingOperation},
				Now: now, Limit: 30, Throttle: ledger.OttuThrottle}); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, tc := range []struct {
		name, query, prefix string
		rows                int
	}{
		{"payment", "SELECT state, amount FROM payments WHERE session_id = ?", "s", 1},
		{"operation", "SELECT txn_state, txn_amount FROM operations WHERE reference_number = ?", "op", 1},
		{"operations-of-a-parent", "SELECT txn_state, txn_amount FROM operations WHERE session_id = ?", "s", 2},
	} {
		b.Run(tc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				key := fmt.Sprintf("%s%d", tc.prefix, (i*7919)%(n/4))
				i++
				rows, err := db.Conn().Query(pushdown, tc.query, key)
				if err != nil {
					b.Fatal(err)
				}
				got := 0
				for rows.Next() {
					got++
				}
				rows.Close()
				if got != tc.rows {
					b.Fatalf("%s %s: %d rows, want %d", tc.name, key, got, tc.rows)
				}
			}
		})
	}
}

// BenchmarkSweep measures the completeness sweep's selection and the
// coverage view over OTTU_BENCH_ORDERS merchant orders (default 1,000,000),
// one a minute up to now (almost two years), each with a paid parent of two
// payment deliveries (pending, then paid) but one in twenty, whose webhooks
// were lost: loaded inside ClickHouse.
//
//	scripts/clickhouse.sh run go test -run '^$' -bench Sweep -benchtime 10x ./internal/clickhouse
func BenchmarkSweep(b *testing.B) {
	n := benchSize("OTTU_BENCH_ORDERS", 1_000_000)
	db := chtest.MustOpenDB(b)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	first := now.Add(-time.Duration(n) * time.Minute).Unix()
	start := time.Now()
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO merchant_orders (order_no, amount, currency_code, updated_at)
			SELECT concat('o', toString(number)), toDecimal128(10, 8), 'KWD', toDateTime(%d + number * 60)
			FROM system.numbers LIMIT %d`, first, n),
		fmt.Sprintf(`INSERT INTO payment_events (delivery_id, stream_seq, received_at, stored_at, session_id, order_no,
			reference_number, state, result, amount, currency_code, gateway_account, gateway_name, payment_type, is_sandbox,
			timestamp_utc, is_terminal, state_rank, child_session_ids, child_states, child_amounts, child_currency_codes)
			SELECT concat('d', toString(number)), number, toDateTime(%[1]d + intDiv(number, 2) * 60 + number %% 2 * 30), now(),
			concat('s', toString(intDiv(number, 2))), concat('o', toString(intDiv(number, 2))), concat('r', toString(number)),
			if(number %% 2 = 0, 'pending', 'paid'), 'success', toDecimal128(10, 8), 'KWD', 'cc', 'mpgs', 'one_off', 0,
			toDateTime(%[1]d + intDiv(number, 2) * 60), number %% 2, if(number %% 2 = 0, 2, 7), [], [], [], []
			FROM system.numbers WHERE intDiv(number, 2) %% 20 != 7 LIMIT %[2]d`, first, 2*n),
	} {
		if err := db.Conn().Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("loaded %d orders and their payment deliveries in %s", n, time.Since(start).Round(time.Millisecond))
	store := &clickhouse.Store{DB: db}
	b.Run("sweep-candidates", func(b *testing.B) {
		for b.Loop() {
			qs, err := store.SweepCandidates(ctx, ledger.SweepQuery{Now: now, PendingBefore: now.Add(-10 * time.Minute),
				Grace: 30 * time.Minute, Watch: 72 * time.Hour, Limit: 30, Throttle: ledger.OttuThrottle})
			if err != nil || len(qs) == 0 {
				b.Fatalf("%d questions, %v", len(qs), err)
			}
		}
	})
	b.Run("coverage-watch", func(b *testing.B) {
		// What the pass's metric reads: the days of the watch.
		for b.Loop() {
			if _, err := store.Coverage(ctx, now.Add(-72*time.Hour)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("coverage-all", func(b *testing.B) {
		// The whole view, as a BI tool reads it.
		for b.Loop() {
			if n := chtest.Count(b, db, "SELECT count() FROM coverage"); n == 0 {
				b.Fatal("no day in coverage")
			}
		}
	})
}

// benchSize is the whole number in the environment variable name, else def.
func benchSize(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
