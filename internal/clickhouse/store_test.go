package clickhouse_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/report"
)

func storedPayment(session, state string, ts, received time.Time) events.StreamMessage {
	seq++
	return events.StreamMessage{
		Envelope:  events.Envelope{ID: "p-" + session + state, Kind: events.KindPayment, ReceivedAt: received, Body: []byte(`{}`)},
		StreamSeq: seq,
		Webhook: &events.Webhook{Kind: events.KindPayment, Payment: &events.Payment{SessionID: session, State: state,
			Amount: amt("10"), CurrencyCode: "KWD", Timestamp: ts}},
	}
}

func storedOperation(ref, session, state string, ts, received time.Time) events.StreamMessage {
	seq++
	return events.StreamMessage{
		Envelope:  events.Envelope{ID: "o-" + ref + state, Kind: events.KindOperation, ReceivedAt: received, Body: []byte(`{}`)},
		StreamSeq: seq,
		Webhook: &events.Webhook{Kind: events.KindOperation, Operation: &events.Operation{ReferenceNumber: ref, SessionID: session,
			Operation: "refund", Amount: amt("1"), Timestamp: ts,
			Txn: events.Txn{SessionID: "c-" + ref, State: state, Amount: amt("1"), CurrencyCode: "KWD"}}},
	}
}

func selected(t *testing.T, s *clickhouse.Store, sel ledger.Selection) []string {
	t.Helper()
	var ids []string
	if err := s.Parents(context.Background(), sel, func(p *ledger.Parent) error {
		ids = append(ids, p.SessionID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(ids)
	return ids
}

// waitClock waits until the ClickHouse clock has passed t (stored_at has a
// one-second resolution), polling with a deadline.
func waitClock(t *testing.T, db *clickhouse.DB, after time.Time) time.Time {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		now, err := db.Now(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if now.After(after) {
			return now
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ClickHouse clock did not pass %s", after)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStore_Selection: an incremental pass evaluates the parents with a
// delivery or an order stored since the watermark (however long ago it was
// received), those with an open finding, those an earlier pass could not
// evaluate, and those for which a time-based rule started to apply since the
// last pass, and no other.
func TestStore_Selection(t *testing.T) {
	db := chtest.MustOpenDB(t)
	w := &clickhouse.Writer{DB: db}
	store := &clickhouse.Store{DB: db}
	now := time.Now().UTC().Truncate(time.Second)
	cfg := ledger.Config{Grace: 10 * time.Minute, StaleAuthorization: 168 * time.Hour, StuckRefund: 48 * time.Hour}
	last := now.Add(-5 * time.Minute)
	old := now.Add(-30 * 24 * time.Hour)
	staleAt := now.Add(-cfg.StaleAuthorization - time.Minute)
	stuckAt := now.Add(-cfg.StuckRefund - time.Minute)
	ordered := storedPayment("ordered", "paid", old, old)
	ordered.Webhook.Payment.OrderNo = "o-ordered"
	mustWrite(t, w,
		storedPayment("old", "paid", old, old),
		storedPayment("stale-crossing", "authorized", staleAt, staleAt),
		storedPayment("stale-not-yet", "authorized", now.Add(-cfg.StaleAuthorization+time.Hour), now.Add(-cfg.StaleAuthorization+time.Hour)),
		storedPayment("stale-before", "authorized", last.Add(-cfg.StaleAuthorization-time.Hour), last.Add(-cfg.StaleAuthorization-time.Hour)),
		storedPayment("grace-crossing", "paid", old, now.Add(-cfg.Grace-30*time.Second)),
		storedPayment("stuck-crossing", "paid", old, old),
		storedOperation("q1", "stuck-crossing", "refund_queued", stuckAt, stuckAt),
		storedOperation("late-op", "orphan-crossing", "refunded", old, now.Add(-cfg.Grace-time.Minute)),
		storedPayment("open-finding", "paid", old, old),
		storedPayment("retry-me", "paid", old, old),
		ordered,
	)
	if err := store.SaveFindings(context.Background(), []ledger.Record{{
		Finding: ledger.Finding{SessionID: "open-finding", Code: ledger.SandboxInLive, Severity: ledger.Critical, Detail: "x"},
		Status:  ledger.StatusOpen, FirstSeen: old, LastSeen: old, RunID: "r"}}); err != nil {
		t.Fatal(err)
	}
	start, err := db.Now(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	watermark := waitClock(t, db, start)

	// Stored after the watermark: received long ago (a spool, a stalled
	// consumer), received now, unreadable, and an order loaded for a parent.
	late := storedPayment("late-stored", "paid", old, old)
	unreadable := events.StreamMessage{Envelope: events.Envelope{ID: "u1", Kind: events.KindPayment, ReceivedAt: old, Body: []byte(`{}`)},
		Unreadable: &events.Unreadable{Kind: events.KindPayment, SessionID: "unreadable-parent", Field: "amount", Reason: "negative"}}
	mustWrite(t, w, storedPayment("changed", "paid", old, now), late, unreadable)
	if err := db.Conn().Exec(context.Background(),
		"INSERT INTO merchant_orders (order_no, amount, currency_code, updated_at) SELECT 'o-ordered', toDecimal128(1, 8), 'KWD', toDateTime('2020-01-01 00:00:00')"); err != nil {
		t.Fatal(err)
	}

	sel := ledger.Selection{StoredSince: watermark, Windows: ledger.Windows(cfg, last.Add(ledger.Margin), now), Sessions: []string{"retry-me"}}
	want := []string{"changed", "grace-crossing", "late-stored", "open-finding", "ordered", "orphan-crossing", "retry-me",
		"stale-crossing", "stuck-crossing", "unreadable-parent"}
	if got := selected(t, store, sel); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("incremental, from the change indexes: got %v, want %v", got, want)
	}
	if !store.ChangeIndexUsed() {
		t.Fatal("the change indexes are complete and were not used")
	}
	// The same, before the change indexes are complete (a database whose
	// backfill is still running): from the event tables.
	if err := db.Conn().Exec(context.Background(), "TRUNCATE TABLE schema_backfills"); err != nil {
		t.Fatal(err)
	}
	before := &clickhouse.Store{DB: db}
	if got := selected(t, before, sel); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("incremental, from the event tables: got %v, want %v", got, want)
	}
	if before.ChangeIndexUsed() {
		t.Fatal("the change indexes were used before their backfill was complete")
	}
	if got := selected(t, store, ledger.Selection{All: true}); len(got) != 13 {
		t.Fatalf("full: got %d parents %v, want 13", len(got), got)
	}
}

// TestStore_ReportPGSide is the regression test of the report's gateway-side
// query: over the operations view (LIMIT 1 BY) with a Nullable decimal
// rendered as text and a two-condition WHERE, ClickHouse 18.16 returned
// garbage bytes, failed ("would use 16.00 PiB") and once crashed. Many
// operations, some with no txn.amount, some done on the gateway's dashboard
// by a later delivery only, and the maximal amount: every run gives exactly
// the expected rows.
func TestStore_ReportPGSide(t *testing.T) {
	db := chtest.MustOpenDB(t)
	w := &clickhouse.Writer{DB: db}
	store := &clickhouse.Store{DB: db}
	now := time.Now().UTC().Truncate(time.Second)
	var msgs []events.StreamMessage
	want := map[string]string{}
	for i := range 240 { // 181 on the gateway's side: under PGSideLimit
		ref := fmt.Sprintf("op-%03d", i)
		m := storedOperation(ref, fmt.Sprintf("p-%03d", i), "refunded", now.Add(-time.Duration(i)*time.Minute), now)
		o := m.Webhook.Operation
		switch i % 4 {
		case 0:
			o.Source = "pg"
			want[ref] = "1.000"
		case 1:
			o.Source, o.Txn.Amount = "pg", events.Amount{}
			want[ref] = ""
		case 2: // pg in a second, later delivery only
			again := storedOperation(ref, o.SessionID, "refunded", now.Add(-time.Duration(i)*time.Minute+time.Second), now)
			again.ID += "-again"
			again.Webhook.Operation.Source = "pg"
			msgs = append(msgs, again)
			want[ref] = "1.000"
		}
		msgs = append(msgs, m)
	}
	huge := storedOperation("op-max", "p-max", "refunded", now, now)
	huge.Webhook.Operation.Source = "pg"
	huge.Webhook.Operation.Txn.Amount = amt("999999999999999999999999999999.99999999")
	want["op-max"] = "999999999999999999999999999999.99999999"
	mustWrite(t, w, append(msgs, huge)...)

	for run := range 5 {
		r, err := store.Report(context.Background(), now.Add(-48*time.Hour))
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		got := map[string]string{}
		for _, o := range r.PGSide {
			got[o.ReferenceNumber] = o.Amount
		}
		if len(got) != len(want) {
			t.Fatalf("run %d: %d pg-side operations, want %d", run, len(got), len(want))
		}
		for ref, amount := range want {
			if got[ref] != amount {
				t.Fatalf("run %d: %s amount %q, want %q", run, ref, got[ref], amount)
			}
		}
	}
}

// TestStore_IncrementalAtScale: an incremental selection over a history of
// 20,000 parents (40,000 payment and 60,000 operation deliveries), 10,000 of
// which got a payment delivery re-posted with one signed reference_number
// under each of their session_ids. Listing every parent with every other
// once cost 10,000 squared rows (ClickHouse ran out of memory); each
// parent now gets the reference with the count and at most 20 others.
func TestStore_IncrementalAtScale(t *testing.T) {
	db := chtest.MustOpenDB(t)
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO payment_events (delivery_id, stream_seq, received_at, stored_at, session_id, reference_number, state,
			amount, currency_code, timestamp_utc, is_terminal, state_rank, child_session_ids, child_states, child_amounts, child_currency_codes)
			SELECT concat('p', toString(number)), number, toDateTime(1700000000 + number), toDateTime(1700000000 + number),
			concat('s', toString(intDiv(number, 2))), concat('a', toString(number)), if(number % 2 = 0, 'pending', 'paid'),
			toDecimal128(100, 8), 'KWD', toDateTime(1700000000 + number), number % 2, 2, [], [], [], []
			FROM system.numbers LIMIT 40000`,
		`INSERT INTO operation_events (delivery_id, stream_seq, received_at, stored_at, reference_number, session_id,
			child_session_id, operation, source, amount, txn_amount, txn_currency_code, txn_state, timestamp_utc, is_terminal, state_rank)
			SELECT concat('o', toString(number)), number, toDateTime(1700000000 + number), now(), concat('op', toString(number)),
			concat('s', toString(intDiv(number, 3))), concat('c', toString(number)), 'refund', 'input', toDecimal128(1, 8),
			toDecimal128(1, 8), 'KWD', 'refunded', toDateTime(1700000000 + number), 1, 1
			FROM system.numbers LIMIT 60000`,
		`INSERT INTO payment_events (delivery_id, stream_seq, received_at, stored_at, session_id, reference_number, state,
			amount, currency_code, timestamp_utc, is_terminal, state_rank, child_session_ids, child_states, child_amounts, child_currency_codes)
			SELECT concat('q', toString(number)), 0, now(), now(), concat('s', toString(number * 2)), 'one-signed-body', 'paid',
			toDecimal128(100, 8), 'KWD', now(), 1, 7, [], [], [], []
			FROM system.numbers LIMIT 10000`,
	} {
		if err := db.Conn().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	cfg := ledger.Config{Grace: 10 * time.Minute, StaleAuthorization: 168 * time.Hour, StuckRefund: 48 * time.Hour}
	now := time.Now().UTC()
	sel := ledger.Selection{StoredSince: now.Add(-time.Hour), Windows: ledger.Windows(cfg, now.Add(-5*time.Minute), now)}
	shared := 0
	if err := (&clickhouse.Store{DB: db}).Parents(ctx, sel, func(p *ledger.Parent) error {
		for _, sh := range p.Shared {
			if sh.Parents != 10000 || len(sh.Sessions) > 20 {
				return fmt.Errorf("%s: shared %+v", p.SessionID, sh)
			}
			shared++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if shared != 10000 {
		t.Fatalf("%d parents told of the shared reference, want 10,000", shared)
	}
}

// A pass reads parents a chunk at a time: however the chunks fall (one for
// everything, one per parent, a list of parents two at a time), every parent
// comes out once, in order, and whole. Spot checks pin what the fold takes
// from the deliveries.
func TestStore_Chunks(t *testing.T) {
	db := chtest.MustOpenDB(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	if _, err := (&clickhouse.Writer{DB: db}).Write(ctx, corpus(t, now), nil); err != nil {
		t.Fatal(err)
	}
	read := func(s *clickhouse.Store, sel ledger.Selection) []*ledger.Parent {
		t.Helper()
		var out []*ledger.Parent
		if err := s.Parents(ctx, sel, func(p *ledger.Parent) error { out = append(out, p); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	whole := read(&clickhouse.Store{DB: db}, ledger.Selection{All: true})
	var keys []string
	for _, p := range whole {
		keys = append(keys, p.SessionID)
	}
	if !slices.IsSorted(keys) || len(slices.Compact(slices.Clone(keys))) != len(keys) || len(keys) < 10 {
		t.Fatalf("parents %q: want each once, in order", keys)
	}
	tiny := &clickhouse.Store{DB: db, ChunkRows: 1}
	clickhouse.SetChunkSessions(tiny, 2)
	for name, got := range map[string][]*ledger.Parent{
		"a range per parent":   read(tiny, ledger.Selection{All: true}),
		"two listed at a time": read(tiny, ledger.Selection{StoredSince: now.Add(time.Hour), Sessions: keys}),
	} {
		if !reflect.DeepEqual(got, whole) {
			t.Errorf("%s: parents differ from one chunk's", name)
			for i := range min(len(got), len(whole)) {
				if !reflect.DeepEqual(got[i], whole[i]) {
					t.Fatalf("first difference: %+v\nwant %+v", got[i], whole[i])
				}
			}
		}
	}
	byID := map[string]*ledger.Parent{}
	for _, p := range whole {
		byID[p.SessionID] = p
	}
	op := func(p *ledger.Parent, ref string) ledger.Operation {
		for _, o := range p.Operations {
			if o.ReferenceNumber == ref {
				return o
			}
		}
		t.Fatalf("%s has no operation %s", p.SessionID, ref)
		return ledger.Operation{}
	}
	at := func(d time.Duration) time.Time { return now.Add(d) }
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"latest state by timestamp, not arrival", byID["s-order"].State, "paid"},
		{"failed then paid", byID["s-late"].State, "paid"},
		{"states reached", byID["s-order"].Reached, map[string]bool{"paid": true, "pending": true}},
		{"latest amount null", byID["s-null"].Amount.Valid, false},
		{"latest refunded_amount null", byID["s-null"].RefundedAmount.Valid, false},
		{"children listed, first time", byID["s-null"].Listed, map[string]time.Time{"c-r1": at(-30 * time.Hour), "c-missing": at(-30 * time.Hour)}},
		{"last payment received", byID["s-null"].LastPaymentAt, at(-29 * time.Hour)},
		{"largest amount", byID["s-max"].Amount.Decimal.String(), "999999999999999999999999999999.99999999"},
		{"authorized since", byID["s-auth"].AuthorizedAt, at(-200 * time.Hour)},
		{"queued since", op(byID["s-q"], "rq").QueuedSince, at(-90 * time.Hour)},
		{"queued, completed: latest state", op(byID["s-q"], "rq").TxnState, "refunded"},
		{"first received", op(byID["s-q"], "rq").FirstReceived, at(-90 * time.Hour)},
		{"null amount", op(byID["s-q"], "rnull").Amount.Valid, false},
		{"conflicting amounts", op(byID["s-auth"], "c1").Seen.Amount.Min.Decimal.String() + ".." + op(byID["s-auth"], "c1").Seen.Amount.Max.Decimal.String(), "10..11"},
		{"latest of the conflicting", op(byID["s-auth"], "c1").Amount.Decimal.String(), "11"},
		{"sources seen", op(byID["s-auth"], "v1").Seen.Sources, []string{"pg"}},
		{"orphan has no payment", byID["s-orphan"].HasPayment, false},
		{"sandbox", byID["s-sandbox"].Sandbox, true},
		{"unreadable filed under its session", len(byID["s-neg"].Unreadable), 1},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

// An incremental pass looks for shared references only among the deliveries
// stored since the last pass and the parents already told of one: a parent
// whose REPLAYED_WEBHOOK was raised by a full pass keeps it in the
// incremental passes after, with nothing new stored.
func TestStore_SharedStaysShared(t *testing.T) {
	db := chtest.MustOpenDB(t)
	ctx := context.Background()
	// Stored three hours ago: no incremental pass looks at them as new.
	if err := db.Conn().Exec(ctx, `INSERT INTO payment_events (delivery_id, stream_seq, received_at, stored_at, session_id,
		reference_number, state, amount, currency_code, timestamp_utc, is_terminal, state_rank, child_session_ids, child_states,
		child_amounts, child_currency_codes)
		SELECT concat('d', toString(number)), number, now() - 10800, now() - 10800, concat('s-', toString(number)),
		if(number < 2, 'ref-1', 'ref-other'), 'paid', toDecimal128(10, 8), 'KWD', now() - 10800, 1, 7, [], [], [], []
		FROM system.numbers LIMIT 3`); err != nil {
		t.Fatal(err)
	}
	store := &clickhouse.Store{DB: db}
	clock := time.Now().UTC()
	r := &ledger.Reconciler{Store: store, Now: func() time.Time { return clock }, FullEvery: 24 * time.Hour,
		Config: ledger.Config{Grace: 10 * time.Minute, StaleAuthorization: 168 * time.Hour, StuckRefund: 48 * time.Hour}}
	for pass := range 5 { // full, then incremental passes with nothing stored
		if pass == 3 {
			// The last two as before the change indexes were complete:
			// from the event tables.
			if !store.ChangeIndexUsed() {
				t.Fatal("the change indexes are complete and were not used")
			}
			if err := db.Conn().Exec(ctx, "TRUNCATE TABLE schema_backfills"); err != nil {
				t.Fatal(err)
			}
			r.Store = &clickhouse.Store{DB: db}
		}
		rep, err := r.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Full != (pass == 0) || rep.Open != 2 || rep.Raised != 2*b2i(pass == 0) || rep.Resolved != 0 {
			t.Fatalf("pass %d: %+v, want the two REPLAYED_WEBHOOK findings raised once and kept open", pass+1, rep)
		}
		clock = clock.Add(time.Minute)
	}
	open, err := store.OpenFindings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range open {
		if f.Code != ledger.ReplayedWebhook {
			t.Errorf("unexpected finding %+v", f)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Whom a pass asks Ottu about: parents with an open finding of the codes
// (most severe first), and for the completeness sweep parents whose latest
// state is still pending and whose last payment webhook is older than
// PendingBefore; never one first seen (by the earliest timestamp_utc or
// arrival) less than 10 minutes ago, asked in the last 30 minutes, or asked
// 3 times in all.
func TestStore_InquiryCandidates(t *testing.T) {
	db, store, ago := storeAtNow(t)
	ctx, now := context.Background(), ago(0)
	if _, err := (&clickhouse.Writer{DB: db}).Write(ctx, []events.StreamMessage{
		storedPayment("s-pending", "pending", ago(2*time.Hour), ago(2*time.Hour)),
		storedPayment("s-paid", "pending", ago(3*time.Hour), ago(3*time.Hour)),
		storedPayment("s-paid", "paid", ago(2*time.Hour), ago(2*time.Hour)),
		storedPayment("s-recent-pending", "pending", ago(5*time.Minute), ago(5*time.Minute)),
		storedPayment("s-finding-old", "paid", ago(2*time.Hour), ago(2*time.Hour)),
		storedOperation("r-young", "s-finding-young", "refunded", ago(5*time.Minute), ago(5*time.Minute)),
		storedOperation("r-back", "s-finding-backdated", "refunded", ago(2*time.Hour), ago(5*time.Minute)), // timestamp_utc 2 h ago
		// First seen two hours ago, though its latest delivery is 5 minutes old.
		storedPayment("s-finding-mixed", "paid", ago(2*time.Hour), ago(2*time.Hour)),
		storedOperation("r-mixed", "s-finding-mixed", "refunded", ago(5*time.Minute), ago(5*time.Minute)),
		storedPayment("s-asked", "pending", ago(2*time.Hour), ago(2*time.Hour)),
		storedPayment("s-asked-thrice", "pending", ago(5*time.Hour), ago(5*time.Hour)),
	}, nil); err != nil {
		t.Fatal(err)
	}
	var recs []ledger.Record
	for _, f := range []struct {
		session string
		code    ledger.Code
	}{{"s-finding-old", ledger.OverRefund}, {"s-finding-young", ledger.MissingOperation}, {"s-finding-backdated", ledger.MissingOperation},
		{"s-finding-mixed", ledger.MissingOperation}} {
		recs = append(recs, ledger.Record{Finding: ledger.Finding{SessionID: f.session, Code: f.code, Severity: ledger.SeverityOf(f.code)},
			Status: ledger.StatusOpen, FirstSeen: now, LastSeen: now, RunID: "r1"})
	}
	if err := store.SaveFindings(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for _, q := range []clickhouse.Inquiry{
		{SessionID: "s-asked", AskedAt: ago(10 * time.Minute), Error: "ottu: no answer: timeout"}, // unanswered: counts all the same
		{SessionID: "s-asked-thrice", AskedAt: ago(3 * time.Hour), Status: 200, Verdict: clickhouse.VerdictFound, State: "pending"},
		{SessionID: "s-asked-thrice", AskedAt: ago(2 * time.Hour), Status: 200, Verdict: clickhouse.VerdictFound, State: "pending"},
		{SessionID: "s-asked-thrice", AskedAt: ago(time.Hour), Status: 200, Verdict: clickhouse.VerdictFound, State: "pending"},
	} {
		if err := store.RecordInquiry(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	got, err := store.InquiryCandidates(ctx, ledger.InquiryQuery{Codes: []ledger.Code{ledger.OverRefund, ledger.MissingOperation},
		Now: now, Limit: 30, Throttle: ledger.OttuThrottle})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"s-finding-old", "s-finding-backdated", "s-finding-mixed"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("asked about %q, want %q", got, want)
	}
	swept, err := store.SweepCandidates(ctx, ledger.SweepQuery{Now: now, PendingBefore: ago(10 * time.Minute),
		Grace: 30 * time.Minute, Watch: 72 * time.Hour, Limit: 30, Throttle: ledger.OttuThrottle})
	if err != nil {
		t.Fatal(err)
	}
	if len(swept) != 1 || swept[0].SessionID != "s-pending" || !swept[0].Since.Equal(ago(2*time.Hour)) {
		t.Fatalf("the sweep asks %+v, want s-pending since its webhook 2h ago", swept)
	}
}

// TestStore_Months: an incremental pass reads the parents that changed in
// the months that hold their deliveries (parent_months), and gets exactly
// what a full pass reads of them: parents with deliveries months apart, one
// received long ago and stored now, one with operations only, and parents
// with no delivery in a month that holds their session_ids' neighbours.
func TestStore_Months(t *testing.T) {
	db := chtest.MustOpenDB(t)
	ctx := context.Background()
	w := &clickhouse.Writer{DB: db}
	now := time.Now().UTC().Truncate(time.Second)
	month := func(n int) time.Time { return now.AddDate(0, -n, 0) }
	mustWrite(t, w,
		storedPayment("m-a", "authorized", month(5), month(5)),
		storedOperation("m-a-cap", "m-a", "paid", month(3), month(3)),
		storedPayment("m-b", "paid", month(4), month(4)),
		storedPayment("m-c", "paid", month(2), month(2)),
		storedOperation("m-d-ref", "m-d", "refunded", month(1), month(1)),
		storedPayment("m-e", "paid", month(6), month(6)),
	)
	start, err := db.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	watermark := waitClock(t, db, start)
	mustWrite(t, w,
		storedOperation("m-a-void", "m-a", "voided", now, now),
		storedOperation("m-b-ref", "m-b", "refunded", month(7), month(7)), // received long ago, stored now
		storedOperation("m-d-ref2", "m-d", "refunded", now, now),
		storedPayment("m-e", "failed", month(6).Add(time.Hour), now),
	)
	read := func(sel ledger.Selection) map[string]string {
		t.Helper()
		out := map[string]string{}
		if err := (&clickhouse.Store{DB: db}).Parents(ctx, sel, func(p *ledger.Parent) error {
			out[p.SessionID] = fmt.Sprintf("%+v", *p)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	got, all := read(ledger.Selection{StoredSince: watermark}), read(ledger.Selection{All: true})
	if len(got) != 4 {
		t.Fatalf("incremental: %d parents, want m-a, m-b, m-d, m-e: %v", len(got), got)
	}
	for id, p := range got {
		if all[id] != p {
			t.Errorf("parent %s in its months:\n %s\nread whole:\n %s", id, p, all[id])
		}
	}
}

// amt is the amount s, a valid constant of the test.
func amt(s string) events.Amount { a, _ := events.ParseAmount(s); return a }

// TestStore_SweepOrders: the completeness sweep asks about a merchant order
// with no payment webhook once its updated_at is RECON_ORDER_GRACE old, for
// RECON_ORDER_WATCH; its questions spread over the watch; never about an
// order whose webhook came, or whose final state Ottu's record gave; oldest
// first.
func TestStore_SweepOrders(t *testing.T) {
	db, store, ago := storeAtNow(t)
	ctx, now := context.Background(), ago(0)
	orders := map[string]time.Duration{
		"o-lost": 2 * time.Hour, "o-webhook": 2 * time.Hour, "o-recent": 10 * time.Minute, "o-old": 96 * time.Hour,
		"o-asked-once": 2 * time.Hour, "o-recovered-paid": 3 * time.Hour, "o-recovered-pending": 30 * time.Hour,
	}
	for no, age := range orders {
		insertOrder(t, db, no, ago(age))
	}
	paid := storedPayment("s-webhook", "paid", ago(time.Hour), ago(time.Hour))
	paid.Webhook.Payment.OrderNo = "o-webhook"
	recoveredPaid := storedPayment("s-recovered-paid", "paid", ago(2*time.Hour), ago(2*time.Hour))
	recoveredPaid.Webhook.Payment.OrderNo = "o-recovered-paid"
	recoveredPaid = asRecord(recoveredPaid)
	recoveredPending := storedPayment("s-recovered-pending", "pending", ago(29*time.Hour), ago(29*time.Hour))
	recoveredPending.Webhook.Payment.OrderNo = "o-recovered-pending"
	recoveredPending = asRecord(recoveredPending)
	mustWrite(t, &clickhouse.Writer{DB: db}, paid, recoveredPaid, recoveredPending)
	for _, q := range []clickhouse.Inquiry{
		{OrderNo: "o-asked-once", AskedAt: ago(time.Hour), Status: 404, Verdict: clickhouse.VerdictNotFound},
		{OrderNo: "o-recovered-paid", SessionID: "s-recovered-paid", AskedAt: ago(2 * time.Hour), Status: 200, Verdict: clickhouse.VerdictFound},
		{OrderNo: "o-recovered-pending", SessionID: "s-recovered-pending", AskedAt: ago(29 * time.Hour), Status: 200, Verdict: clickhouse.VerdictFound},
	} {
		if err := store.RecordInquiry(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	got, err := store.SweepCandidates(ctx, ledger.SweepQuery{Now: now, PendingBefore: ago(10 * time.Minute),
		Grace: 30 * time.Minute, Watch: 72 * time.Hour, Limit: 30, Throttle: ledger.OttuThrottle})
	if err != nil {
		t.Fatal(err)
	}
	// o-recovered-pending's second question was due at updated_at + 30m +
	// (72h - 30m)/3 = 5h40m ago; o-asked-once's is due in almost a day.
	want := []ledger.Question{{OrderNo: "o-recovered-pending", Since: ago(30 * time.Hour)}, {OrderNo: "o-lost", Since: ago(2 * time.Hour)}}
	if len(got) != len(want) {
		t.Fatalf("the sweep asks %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].OrderNo != want[i].OrderNo || got[i].SessionID != "" || !got[i].Since.Equal(want[i].Since) {
			t.Fatalf("the sweep asks %+v, want %+v", got, want)
		}
	}
}

// TestCoverage: the coverage view and the pass's reading of it (Coverage)
// agree: an order and its parent count once, on the order's day; a parent
// with no order on its first delivery's day; a final state from a webhook
// is accounted, one from Ottu's record alone recovered, none unknown.
func TestCoverage(t *testing.T) {
	db := chtest.MustOpenDB(t)
	ctx := context.Background()
	store := &clickhouse.Store{DB: db}
	day := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)
	at := func(h int) time.Time { return day.Add(time.Duration(h) * time.Hour) }
	for _, o := range []string{"o-webhook", "o-recovered", "o-unknown"} {
		insertOrder(t, db, o, at(1))
	}
	withOrder := func(m events.StreamMessage, order, source string) events.StreamMessage {
		m.Webhook.Payment.OrderNo = order
		if source == "inquiry" {
			m = asRecord(m)
		}
		return m
	}
	mustWrite(t, &clickhouse.Writer{DB: db},
		withOrder(storedPayment("cov-1", "pending", at(2), at(2)), "o-webhook", ""),
		withOrder(storedPayment("cov-1", "paid", at(3), at(3)), "o-webhook", ""),
		withOrder(storedPayment("cov-2", "paid", at(2), at(2)), "o-recovered", "inquiry"),
		withOrder(storedPayment("cov-3", "paid", at(30), at(30)), "", ""),    // no order: the next day
		withOrder(storedPayment("cov-4", "pending", at(31), at(31)), "", ""), // still pending
	)
	var view []report.Coverage
	rows, err := db.Conn().Query(ctx, "SELECT toString(day), expected, accounted, recovered, unknown FROM coverage ORDER BY day")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var d report.Coverage
		if err := rows.Scan(&d.Day, &d.Expected, &d.Accounted, &d.Recovered, &d.Unknown); err != nil {
			t.Fatal(err)
		}
		view = append(view, d)
	}
	rows.Close()
	want := []report.Coverage{
		{Day: day.Format(time.DateOnly), Expected: 3, Accounted: 2, Recovered: 1, Unknown: 1},
		{Day: day.Add(24 * time.Hour).Format(time.DateOnly), Expected: 2, Accounted: 1, Unknown: 1},
	}
	if len(view) != 2 || view[0] != want[0] || view[1] != want[1] {
		t.Fatalf("coverage view %+v, want %+v", view, want)
	}
	got, err := store.Coverage(ctx, day)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Coverage %+v, want the view's %+v", got, want)
	}
}

// insertOrder adds a merchant order of 10.000 KWD, last updated at.
func insertOrder(t *testing.T, db *clickhouse.DB, orderNo string, at time.Time) {
	t.Helper()
	batch, err := db.Conn().PrepareBatch(context.Background(), "INSERT INTO merchant_orders (order_no, amount, currency_code, updated_at)")
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.Append(orderNo, decimal.RequireFromString("10"), "KWD", at); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
}

// asRecord makes m Ottu's signed record, as the inquirer stores it.
func asRecord(m events.StreamMessage) events.StreamMessage {
	m.ID, m.Source = events.RecordIDPrefix+m.ID, "inquiry"
	return m
}

// storeAtNow opens a database of the test's own, its store, and a clock of
// times before now (to the second).
func storeAtNow(t *testing.T) (*clickhouse.DB, *clickhouse.Store, func(time.Duration) time.Time) {
	t.Helper()
	db := chtest.MustOpenDB(t)
	now := time.Now().UTC().Truncate(time.Second)
	return db, &clickhouse.Store{DB: db}, func(d time.Duration) time.Time { return now.Add(-d) }
}
