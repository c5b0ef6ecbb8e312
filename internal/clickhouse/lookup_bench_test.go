package clickhouse_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

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
	n := 2_000_000
	if v, err := strconv.Atoi(os.Getenv("OTTU_BENCH_DELIVERIES")); err == nil && v > 0 {
		n = v
	}
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
