package clickhouse_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// history loads parents spread over six months of received_at (six
// partitions): payments pending then paid or authorized, with an order_no,
// and refunds, some still queued.
var history = []string{
	`INSERT INTO payment_events (delivery_id, stream_seq, received_at, stored_at, session_id, order_no, reference_number, state,
		amount, currency_code, timestamp_utc, is_terminal, state_rank, child_session_ids, child_states, child_amounts, child_currency_codes)
		SELECT concat('hp', toString(number)), number, toDateTime(1777000000 + intDiv(number, 2) * 5000),
		toDateTime(1777000000 + intDiv(number, 2) * 5000), concat('h', toString(intDiv(number, 2))), concat('ho', toString(intDiv(number, 2))),
		concat('ha', toString(number)), if(number % 2 = 0, 'pending', if(number % 6 = 1, 'authorized', 'paid')),
		toDecimal128(10, 8), 'KWD', toDateTime(1777000000 + intDiv(number, 2) * 5000), number % 2, 2, [], [], [], []
		FROM system.numbers LIMIT 6000`,
	`INSERT INTO operation_events (delivery_id, stream_seq, received_at, stored_at, reference_number, session_id,
		child_session_id, operation, source, amount, txn_amount, txn_currency_code, txn_state, timestamp_utc, is_terminal, state_rank)
		SELECT concat('ho', toString(number)), number, toDateTime(1777000000 + intDiv(number, 3) * 5000),
		toDateTime(1777000000 + intDiv(number, 3) * 5000), concat('hr', toString(number)), concat('h', toString(intDiv(number, 3))),
		concat('hc', toString(number)), 'refund', 'input', toDecimal128(1, 8), toDecimal128(1, 8), 'KWD',
		if(number % 7 = 0, 'refund_queued', 'refunded'), toDateTime(1777000000 + intDiv(number, 3) * 5000), number % 7 != 0, 1
		FROM system.numbers LIMIT 9000`,
}

// TestMigrate_ChangeIndex: a database created by schema 9, with a history
// over several partitions, is migrated while deliveries keep being stored
// (as serve does during `reconcile migrate`); the backfill is killed after
// its first partition and run again. Every delivery is kept once, the
// indexes hold every delivery stored before, during and after, the second
// run does not redo what the first did, and the passes find exactly what
// they find on a database created by the latest schema with the same rows.
func TestMigrate_ChangeIndex(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	db := chtest.NewDB(t)
	if _, err := db.MigrateTo(ctx, clickhouse.ChangeIndexVersion-1); err != nil {
		t.Fatal(err)
	}
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	w := &clickhouse.Writer{DB: db}
	for _, q := range history {
		if err := db.Conn().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	stored := corpus(t, now)
	if _, err := w.Write(ctx, stored, nil); err != nil {
		t.Fatal(err)
	}
	const deliveries = "SELECT count(), uniqExact(delivery_id) FROM (SELECT delivery_id FROM payment_events UNION ALL SELECT delivery_id FROM operation_events)"
	count := func() (rows, distinct uint64) {
		t.Helper()
		if err := db.Conn().QueryRow(ctx, deliveries).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		return rows, distinct
	}
	before, _ := count()

	// Deliveries keep arriving while the schema moves (a batch at a time,
	// as the consumer stores them).
	var (
		mu      sync.Mutex
		written []events.StreamMessage
		stop    = make(chan struct{})
		done    = make(chan error, 1)
		retries atomic.Int32
	)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			batch := []events.StreamMessage{
				storedPayment(fmt.Sprintf("during-%d", i), "authorized", now.Add(-time.Minute), now),
				storedOperation(fmt.Sprintf("during-ref-%d", i), fmt.Sprintf("h%d", i), "refund_queued", now, now),
			}
			// As the consumer does: a failed batch is tried again, every
			// table checked for what an attempt may have stored. (On 18.16
			// an insert at the instant a view is created can fail: the
			// view is registered before it is attached.)
			var err error
			for attempt := 0; attempt < 20; attempt++ {
				var maybe []bool
				if attempt > 0 {
					maybe = []bool{true, true}
					retries.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
				if _, err = w.Write(ctx, batch, maybe); err == nil {
					break
				}
			}
			if err != nil {
				done <- err
				return
			}
			mu.Lock()
			written = append(written, batch...)
			mu.Unlock()
		}
	}()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// Killed after its first partition...
	killed, cancel := context.WithCancel(ctx)
	var first []clickhouse.BackfillProgress
	err := db.Backfill(killed, func(p clickhouse.BackfillProgress) {
		first = append(first, p)
		cancel()
	})
	cancel()
	if !errors.Is(err, context.Canceled) || len(first) != 1 {
		t.Fatalf("backfill killed after a partition: %v, %d partitions done", err, len(first))
	}
	if ok, err := db.BackfillComplete(ctx, clickhouse.ChangeIndexVersion); err != nil || ok {
		t.Fatalf("complete after one partition: %v %v", ok, err)
	}
	// ...and run again: it resumes.
	var second []clickhouse.BackfillProgress
	if err := db.Backfill(ctx, func(p clickhouse.BackfillProgress) { second = append(second, p) }); err != nil {
		t.Fatal(err)
	}
	var migrated uint64
	for _, p := range append(first, second...) {
		migrated += p.Rows
		if p.Source != "" && slices.ContainsFunc(second, func(q clickhouse.BackfillProgress) bool {
			return q != p && q.Source == p.Source && q.Partition == p.Partition
		}) {
			t.Errorf("partition %d of %s backfilled twice", p.Partition, p.Source)
		}
	}
	if len(second) < 7 || second[len(second)-1].Source != "" {
		t.Fatalf("second run: %+v, want the other partitions of both tables, then complete", second)
	}
	if ok, err := db.BackfillComplete(ctx, clickhouse.ChangeIndexVersion); err != nil || !ok {
		t.Fatalf("not complete after the second run: %v", err)
	}
	// The writer keeps going a little after the migration, then stops.
	mu.Lock()
	n := len(written)
	mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		m := len(written)
		mu.Unlock()
		if m >= n+4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(written) < 4 {
		t.Fatalf("only %d deliveries stored during the migration", len(written))
	}

	// Every delivery once.
	rows, distinct := count()
	readable := 0
	for _, m := range written {
		if m.Webhook != nil {
			readable++
		}
	}
	if rows != before+uint64(readable) || distinct != rows {
		t.Fatalf("deliveries: %d rows (%d distinct), want %d before + %d stored during", rows, distinct, before, readable)
	}
	if migrated < before {
		t.Errorf("backfill counted %d rows, fewer than the %d stored before", migrated, before)
	}
	t.Logf("%d deliveries before, %d stored during the migration (%d batches tried again); %d partitions", before, readable,
		retries.Load(), len(first)+len(second)-1)

	// The indexes hold every delivery, whenever it was stored.
	for _, c := range []struct{ name, events, index string }{
		{"payment", "SELECT DISTINCT session_id, stored_at, reference_number FROM payment_events",
			"SELECT DISTINCT session_id, at, reference_number FROM parent_changes WHERE kind = 'payment'"},
		{"operation", "SELECT DISTINCT session_id, stored_at, reference_number FROM operation_events",
			"SELECT DISTINCT session_id, at, reference_number FROM parent_changes WHERE kind = 'operation'"},
		{"authorized", "SELECT DISTINCT session_id, timestamp_utc, reference_number FROM payment_events WHERE state = 'authorized'",
			"SELECT DISTINCT session_id, at, reference_number FROM parent_changes WHERE kind = 'authorized'"},
		{"refund_queued", "SELECT DISTINCT session_id, timestamp_utc, reference_number FROM operation_events WHERE txn_state IN ('refund_queued', 'refund-queued')",
			"SELECT DISTINCT session_id, at, reference_number FROM parent_changes WHERE kind = 'refund_queued'"},
		{"payment_reference", "SELECT DISTINCT reference_number, session_id FROM payment_events WHERE reference_number != ''",
			"SELECT DISTINCT key, session_id FROM parent_keys WHERE key_kind = 'payment_reference'"},
		{"operation_reference", "SELECT DISTINCT reference_number, session_id FROM operation_events WHERE reference_number != ''",
			"SELECT DISTINCT key, session_id FROM parent_keys WHERE key_kind = 'operation_reference'"},
		{"order_no", "SELECT DISTINCT order_no, session_id FROM payment_events WHERE order_no != ''",
			"SELECT DISTINCT key, session_id FROM parent_keys WHERE key_kind = 'order_no'"},
		{"months", `SELECT DISTINCT session_id, month FROM (SELECT session_id, toYYYYMM(received_at) AS month FROM payment_events
			UNION ALL SELECT session_id, toYYYYMM(received_at) AS month FROM operation_events)`,
			"SELECT DISTINCT session_id, month FROM parent_months"},
	} {
		// Each side is distinct; their union is as large as each when
		// the two are the same set.
		var want, got, union uint64
		q := fmt.Sprintf("SELECT (SELECT count() FROM (%[1]s)), (SELECT count() FROM (%[2]s))", c.events, c.index)
		if err := db.Conn().QueryRow(ctx, q).Scan(&want, &got); err != nil {
			t.Fatal(err)
		}
		if err := db.Conn().QueryRow(ctx, fmt.Sprintf("SELECT count() FROM (SELECT DISTINCT * FROM (%s UNION ALL %s))", c.events, c.index)).Scan(&union); err != nil {
			t.Fatal(err)
		}
		if want == 0 || got != want || union != want {
			t.Errorf("index %s: %d rows for %d in the event tables (%d in both)", c.name, got, want, union)
		}
	}

	// The passes: the same findings as on a database created by the latest
	// schema with the same rows.
	fresh := chtest.MustOpenDB(t)
	for _, q := range history {
		if err := fresh.Conn().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := (&clickhouse.Writer{DB: fresh}).Write(ctx, append(stored, written...), nil); err != nil {
		t.Fatal(err)
	}
	migratedFindings, freshFindings := passes(t, db, now), passes(t, fresh, now)
	if len(freshFindings) == 0 || fmt.Sprint(migratedFindings) != fmt.Sprint(freshFindings) {
		t.Fatalf("findings after the migration:\n%v\nwant, as on a fresh database:\n%v", migratedFindings, freshFindings)
	}
}

// passes runs a full pass and an incremental one (after a new refund for one
// parent of the history) and returns the open findings.
func passes(t *testing.T, db *clickhouse.DB, now time.Time) []string {
	t.Helper()
	ctx := context.Background()
	clock := now.Add(time.Hour)
	r := &ledger.Reconciler{Store: &clickhouse.Store{DB: db}, Now: func() time.Time { return clock }, FullEvery: 24 * time.Hour,
		Config: ledger.Config{Grace: 10 * time.Minute, StaleAuthorization: 168 * time.Hour, StuckRefund: 48 * time.Hour, Live: true}}
	r.OnParentError = func(s string, err error) { t.Errorf("parent %s: %v", s, err) }
	if rep, err := r.Run(ctx); err != nil || !rep.Full {
		t.Fatalf("full pass: %+v %v", rep, err)
	}
	late := storedOperation("late-refund", "h7", "refunded", now, now)
	late.Envelope.ID = "late-refund"
	if _, err := (&clickhouse.Writer{DB: db}).Write(ctx, []events.StreamMessage{late}, nil); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(5 * time.Minute)
	if rep, err := r.Run(ctx); err != nil || rep.Full || rep.ParentsEvaluated == 0 {
		t.Fatalf("incremental pass: %+v %v", rep, err)
	}
	open, err := r.Store.OpenFindings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range open {
		out = append(out, f.SessionID+" "+string(f.Code)+" "+f.Detail)
	}
	slices.Sort(out)
	return out
}

// TestMigrate_FromVersion2: rows stored by schema 2, in parts written before
// stored_at existed (schema 3 gave it a DEFAULT), are backfilled whole: on
// 18.16 a WHERE moved to PREWHERE with an ARRAY JOIN over such a part
// returned no row (or failed).
func TestMigrate_FromVersion2(t *testing.T) {
	ctx := context.Background()
	db := chtest.NewDB(t)
	if _, err := db.MigrateTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Conn().Exec(ctx, `INSERT INTO payment_events (delivery_id, session_id, reference_number, order_no, state, received_at)
		SELECT concat('d', toString(number)), concat('s', toString(number)), concat('r', toString(number)), concat('o', toString(number)),
		if(number % 2 = 0, 'authorized', 'paid'), now() - number * 86400 FROM system.numbers LIMIT 100`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Backfill(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]uint64{
		"SELECT uniqExact(session_id) FROM parent_changes WHERE kind = 'payment'":          100,
		"SELECT uniqExact(session_id) FROM parent_changes WHERE kind = 'authorized'":       50,
		"SELECT uniqExact(key) FROM parent_keys WHERE key_kind = 'payment_reference'":      100,
		"SELECT uniqExact(key) FROM parent_keys WHERE key_kind = 'order_no'":               100,
		"SELECT count() FROM (SELECT DISTINCT session_id, month FROM parent_months)":       100,
		"SELECT count() FROM parent_changes WHERE kind = 'payment' AND at = toDateTime(0)": 0,
	} {
		if got := chtest.Count(t, db, q); got != want {
			t.Errorf("%s: %d, want %d", q, got, want)
		}
	}
}
