package clickhouse_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
)

var seq uint64

// message builds a stream message from a webhook object, as the consumer would.
func message(tb testing.TB, obj map[string]any) events.StreamMessage {
	tb.Helper()
	body, err := json.Marshal(obj)
	if err != nil {
		tb.Fatal(err)
	}
	rd, err := events.Read(body, events.Verification{Trusted: true})
	if err != nil || rd.Webhook == nil {
		tb.Fatalf("read %s: %v %+v", body, err, rd.Unreadable)
	}
	w := rd.Webhook
	seq++
	return events.StreamMessage{
		Envelope:  events.Envelope{ID: rd.DeliveryID(), Kind: w.Kind, ReceivedAt: time.Now().UTC(), Scheme: events.SchemeA, Body: body},
		StreamSeq: seq,
		Webhook:   w,
	}
}

func paymentObj(session, state, ts string) map[string]any {
	return map[string]any{"session_id": session, "state": state, "amount": "25.500", "currency_code": "KWD",
		"order_no": "O-" + session, "reference_number": "R-" + session, "result": "success", "timestamp_utc": ts,
		"gateway_account": "credit-card", "gateway_name": "mpgs",
		"transactions": []any{map[string]any{"session_id": "child-" + session, "state": "refunded", "amount": "1.000"}}}
}

func operationObj(ref, parent, txnState, ts string) map[string]any {
	return map[string]any{"reference_number": ref, "session_id": parent, "operation": "refund", "amount": "5.000",
		"source": "input", "result": "success", "success": true, "timestamp_utc": ts,
		"txn": map[string]any{"session_id": "child-" + ref, "state": txnState, "amount": "5.000", "currency_code": "KWD"}}
}

func mustWrite(tb testing.TB, w *clickhouse.Writer, msgs ...events.StreamMessage) clickhouse.WriteResult {
	tb.Helper()
	res, err := w.Write(context.Background(), msgs, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

func TestWriter_ExactlyOnce(t *testing.T) {
	db := chtest.MustOpenDB(t)
	w := &clickhouse.Writer{DB: db}

	const n = 50
	var batch []events.StreamMessage
	for i := range n {
		batch = append(batch, message(t, paymentObj(fmt.Sprintf("s%03d", i), "paid", "2026-05-14 10:00:00")))
		batch = append(batch, message(t, operationObj(fmt.Sprintf("r%03d", i), fmt.Sprintf("s%03d", i), "refunded", "2026-05-14 11:00:00")))
	}
	// The same webhook twice inside the batch.
	batch = append(batch, batch[0], batch[1])
	res := mustWrite(t, w, batch...)
	if res.Payments != n || res.Operations != n || res.Duplicates != 2 {
		t.Fatalf("first batch: got %+v", res)
	}
	// A redelivery of the whole batch (a crash before the ack), and Ottu re-sending one days later.
	res = mustWrite(t, w, batch...)
	if res.Payments != 0 || res.Operations != 0 || res.Duplicates != len(batch) {
		t.Fatalf("redelivered batch: got %+v", res)
	}
	later := batch[4]
	later.StreamSeq, later.ReceivedAt = 99999, later.ReceivedAt.Add(72*time.Hour)
	mustWrite(t, w, later)

	for query, want := range map[string]uint64{
		"SELECT count() FROM webhooks_raw":                            2 * n,
		"SELECT count() FROM webhooks_raw WHERE kind = 'payment'":     n,
		"SELECT count() FROM payments":                                n,
		"SELECT count() FROM operations":                              n,
		"SELECT count() FROM payment_events":                          n,
		"SELECT count() FROM operations WHERE txn_state = 'refunded'": n,
	} {
		if got := chtest.Count(t, db, query); got != want {
			t.Errorf("%s: got %d, want %d", query, got, want)
		}
	}
	var amount decimal.Decimal
	var children []string
	if err := db.Conn().QueryRow(context.Background(),
		"SELECT amount, child_session_ids FROM payment_events WHERE session_id = 's001'").Scan(&amount, &children); err != nil {
		t.Fatal(err)
	}
	if !amount.Equal(decimal.RequireFromString("25.5")) || len(children) != 1 || children[0] != "child-s001" {
		t.Fatalf("stored payment: amount %s children %v", amount, children)
	}
}

func TestWriter_LatestState(t *testing.T) {
	db := chtest.MustOpenDB(t)
	w := &clickhouse.Writer{DB: db}
	state := func(session string) string {
		var s string
		if err := db.Conn().QueryRow(context.Background(), "SELECT state FROM payments WHERE session_id = ?", session).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	txnState := func(ref string) string {
		var s string
		if err := db.Conn().QueryRow(context.Background(), "SELECT txn_state FROM operations WHERE reference_number = ?", ref).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name     string
		session  string
		sequence [][2]string // state, timestamp_utc, in arrival order
		want     string
	}{
		{"pending arrives after paid", "a", [][2]string{{"paid", "2026-05-14 10:00:05"}, {"pending", "2026-05-14 10:00:00"}}, "paid"},
		{"pending with the same second", "b", [][2]string{{"paid", "2026-05-14 10:00:00"}, {"pending", "2026-05-14 10:00:00"}}, "paid"},
		{"pending stamped later still does not undo paid", "c", [][2]string{{"paid", "2026-05-14 10:00:00"}, {"pending", "2026-05-14 10:09:00"}}, "paid"},
		{"failed later becomes paid", "d", [][2]string{{"failed", "2026-05-14 10:00:00"}, {"paid", "2026-05-14 11:00:00"}}, "paid"},
		{"paid arrives before the earlier failed", "e", [][2]string{{"paid", "2026-05-14 11:00:00"}, {"failed", "2026-05-14 10:00:00"}}, "paid"},
		{"authorized then fully captured to paid", "f", [][2]string{{"authorized", "2026-05-14 10:00:00"}, {"paid", "2026-05-14 12:00:00"}}, "paid"},
		{"created then pending", "g", [][2]string{{"created", "2026-05-14 10:00:00"}, {"pending", "2026-05-14 10:01:00"}}, "pending"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range tt.sequence {
				mustWrite(t, w, message(t, paymentObj(tt.session, s[0], s[1])))
			}
			if got := state(tt.session); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
	// A queued refund later completed; the queued notice arriving last does not undo it.
	mustWrite(t, w, message(t, operationObj("q1", "a", "refunded", "2026-05-15 10:00:00")))
	mustWrite(t, w, message(t, operationObj("q1", "a", "refund_queued", "2026-05-15 09:00:00")))
	if got := txnState("q1"); got != "refunded" {
		t.Fatalf("queued refund: got %s, want refunded", got)
	}
}

func TestWriter_Rejected(t *testing.T) {
	db := chtest.MustOpenDB(t)
	w := &clickhouse.Writer{DB: db}
	rejected := events.StreamMessage{Envelope: events.Envelope{ID: "rej1", ReceivedAt: time.Now().UTC(),
		Reject: "bad_signature: signature matches no key", Body: []byte(`{"x":1}`)}, StreamSeq: 7}
	poison := events.StreamMessage{Envelope: events.Envelope{Body: []byte("\x00garbage")}, StreamSeq: 8, Invalid: "bad envelope: version \"\""}
	res := mustWrite(t, w, rejected, poison, rejected)
	if res.Rejected != 2 || res.Duplicates != 1 {
		t.Fatalf("got %+v", res)
	}
	mustWrite(t, w, rejected, poison) // redelivery
	if got := chtest.Count(t, db, "SELECT count() FROM rejected_webhooks"); got != 2 {
		t.Fatalf("rejected rows: got %d, want 2", got)
	}
	if got := chtest.Count(t, db, "SELECT count() FROM rejected_webhooks WHERE reason LIKE 'unreadable stream message: bad envelope%' AND body = ?", "\x00garbage"); got != 1 {
		t.Fatal("poison message not kept with its reason and body")
	}
	if got := chtest.Count(t, db, "SELECT count() FROM webhooks_raw"); got != 0 {
		t.Fatalf("raw rows: got %d, want 0", got)
	}
}

// TestWriter_LargeBatch crosses the existence check's chunk size.
func TestWriter_LargeBatch(t *testing.T) {
	db := chtest.MustOpenDB(t)
	w := &clickhouse.Writer{DB: db}
	const n = 9001
	batch := make([]events.StreamMessage, n)
	for i := range batch {
		batch[i] = message(t, operationObj(fmt.Sprintf("big%05d", i), "p", "refunded", "2026-05-14 11:00:00"))
	}
	if res := mustWrite(t, w, batch...); res.Operations != n {
		t.Fatalf("first: got %+v", res)
	}
	if res := mustWrite(t, w, batch...); res.Duplicates != n || res.Operations != 0 {
		t.Fatalf("redelivery: got %+v", res)
	}
	if got := chtest.Count(t, db, "SELECT count() FROM webhooks_raw"); got != n {
		t.Fatalf("raw: got %d, want %d", got, n)
	}
}

// TestWriter_PoisonIsolated: a batch the database refuses because of one
// message's value (here a decimal no Decimal(38, 8) holds, as older
// deliveries or another producer could carry) is split until that message
// stands alone: it is kept whole in unreadable_webhooks with the reason, the
// rest is stored, and no row is written twice.
func TestWriter_PoisonIsolated(t *testing.T) {
	db := chtest.MustOpenDB(t)
	w := &clickhouse.Writer{DB: db}
	now := time.Now().UTC().Truncate(time.Second)
	var msgs []events.StreamMessage
	for i := range 9 {
		msgs = append(msgs, storedPayment(fmt.Sprintf("ok-%d", i), "paid", now, now))
	}
	huge := storedPayment("huge", "paid", now, now)
	d, _ := decimal.NewFromString(strings.Repeat("9", 35))
	huge.Webhook.Payment.Amount = events.Amount{Decimal: d, Valid: true}
	msgs = append(msgs[:5], append([]events.StreamMessage{huge}, msgs[5:]...)...)
	op := storedOperation("op-1", "ok-1", "refunded", now, now)
	msgs = append(msgs, op)

	res, err := w.Write(context.Background(), msgs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Poisoned != 1 || res.Payments != 9 || res.Operations != 1 {
		t.Fatalf("result %+v, want 9 payments, 1 operation, 1 poisoned", res)
	}
	if len(res.Refused) != 1 || res.Refused[0].Index != 5 || !strings.Contains(res.Refused[0].Reason, "the store refused it") {
		t.Fatalf("refused %+v, want message 5 alone", res.Refused)
	}
	if n := chtest.Count(t, db, "SELECT count() FROM unreadable_webhooks WHERE session_id = 'huge' AND body != ''"); n != 1 {
		t.Fatalf("kept poison rows: %d, want 1", n)
	}
	for table, want := range map[string]uint64{"payment_events": 9, "operation_events": 1, "webhooks_raw": 10} {
		if n := chtest.Count(t, db, "SELECT count() FROM "+table); n != want {
			t.Errorf("%s: %d rows, want %d (each once)", table, n, want)
		}
	}
	// The same batch again (a redelivery): nothing new.
	all := make([]bool, len(msgs))
	for i := range all {
		all[i] = true
	}
	res, err = w.Write(context.Background(), msgs, all)
	if err != nil || res.Payments+res.Operations != 0 || len(res.Refused) != 1 || res.Refused[0].Index != 5 {
		t.Fatalf("redelivery: %+v %v (want nothing new stored, the poison marked again for termination)", res, err)
	}
	if n := chtest.Count(t, db, "SELECT count() FROM unreadable_webhooks"); n != 1 {
		t.Fatalf("kept poison rows after redelivery: %d, want 1", n)
	}
}

// TestWriter_RetryAfterPartialWrite: a batch whose typed rows were written by
// an attempt that failed before its commit marker is retried without
// inserting them again.
func TestWriter_RetryAfterPartialWrite(t *testing.T) {
	db := chtest.MustOpenDB(t)
	w := &clickhouse.Writer{DB: db}
	now := time.Now().UTC().Truncate(time.Second)
	msgs := []events.StreamMessage{storedPayment("p1", "paid", now, now), storedOperation("o1", "p1", "refunded", now, now)}
	// The earlier attempt: typed rows only, no webhooks_raw (it failed there).
	if err := db.Conn().Exec(context.Background(), "INSERT INTO payment_events (delivery_id, session_id) SELECT ?, 'p1'", msgs[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(context.Background(), msgs, []bool{true, true}); err != nil {
		t.Fatal(err)
	}
	if n := chtest.Count(t, db, "SELECT count() FROM payment_events WHERE session_id = 'p1'"); n != 1 {
		t.Fatalf("payment_events rows for p1: %d, want 1", n)
	}
	if n := chtest.Count(t, db, "SELECT count() FROM webhooks_raw"); n != 2 {
		t.Fatalf("webhooks_raw: %d, want 2", n)
	}
}

// TestTimeZone: a pass, the report and the views give the same days and the
// same rows with the ClickHouse server in Asia/Kuwait (UTC+3) as in UTC. The
// history sits just before midnight UTC, so every day it shows would move by
// one if a time were turned into a day in the server's zone.
func TestTimeZone(t *testing.T) {
	now := time.Date(2026, 11, 29, 22, 40, 0, 0, time.UTC)
	utc := outcome(t, chtest.MustOpenDB(t), now) // the suite's server runs in UTC
	kuwait := outcome(t, chtest.MustOpenDB(t, chtest.StartServer(t, "Asia/Kuwait").Addr), now)
	if utc != kuwait {
		t.Fatalf("results differ with the server in Asia/Kuwait:\n--- UTC\n%s\n--- Asia/Kuwait\n%s", utc, kuwait)
	}
	if !strings.Contains(utc, "2026-11-29") {
		t.Fatalf("no day 2026-11-29 in the outcome: %s", utc)
	}
}

// outcome runs the flow on db and renders what users see: findings, the
// report and the views, as ClickHouse itself renders their times.
func outcome(t *testing.T, db *clickhouse.DB, now time.Time) string {
	flow(t, db, now)
	var b strings.Builder
	r, err := (&clickhouse.Store{DB: db}).Report(context.Background(), now.Add(-30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r.LastRun = nil // its run id is random
	js, _ := json.Marshal(r)
	b.Write(js)
	b.WriteByte('\n')
	for _, q := range []string{
		"SELECT session_id, code, toString(status), detail, toString(first_seen), toString(toDate(first_seen)) FROM findings ORDER BY session_id, code",
		"SELECT session_id, state, toString(timestamp_utc), toString(toDate(timestamp_utc)), toString(received_at), toString(toDate(received_at)) FROM payments ORDER BY session_id",
		"SELECT reference_number, txn_state, toString(timestamp_utc), toString(toDate(timestamp_utc)), toString(received_at) FROM operations ORDER BY reference_number",
	} {
		rows, err := db.Conn().Query(context.Background(), q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for rows.Next() {
			cols := make([]string, len(rows.Columns()))
			ptrs := make([]any, len(cols))
			for i := range cols {
				ptrs[i] = &cols[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&b, strings.Join(cols, " | "))
		}
		rows.Close()
	}
	return b.String()
}
