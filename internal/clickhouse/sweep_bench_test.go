package clickhouse_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// BenchmarkSweep measures the completeness sweep's selection and the
// coverage view over OTTU_BENCH_ORDERS merchant orders (default 1,000,000),
// one a minute up to now (almost two years), each with a paid parent of two
// payment deliveries (pending, then paid) but one in twenty, whose webhooks
// were lost: loaded inside ClickHouse.
//
//	scripts/clickhouse.sh run go test -run '^$' -bench Sweep -benchtime 10x ./internal/clickhouse
func BenchmarkSweep(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("OTTU_BENCH_ORDERS")); err == nil && v > 0 {
		n = v
	}
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
