package clickhouse_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/report"
)

// TestStore_SweepOrders: the completeness sweep asks about a merchant order
// with no payment webhook once its updated_at is RECON_ORDER_GRACE old, for
// RECON_ORDER_WATCH; its questions spread over the watch; never about an
// order whose webhook came, or whose final state Ottu's record gave; oldest
// first.
func TestStore_SweepOrders(t *testing.T) {
	db := chtest.MustOpenDB(t)
	ctx := context.Background()
	store := &clickhouse.Store{DB: db}
	now := time.Now().UTC().Truncate(time.Second)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
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
