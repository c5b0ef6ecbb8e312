package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
	"github.com/ottu-recon/ottu-recon/internal/ottusim"
)

// The scenarios of "Reliability" (docs/guarantees.md): each one was a way a
// single ordinary production event stopped the pipeline or slipped past a pass.

var signKey = []byte("k")

func signed(m map[string]any) []byte { return ottusim.Sign(m, events.SchemeA, signKey) }

func payment(session string, extra map[string]any) map[string]any {
	m := map[string]any{"session_id": session, "state": "paid", "result": "success", "amount": "10.000",
		"currency_code": "KWD", "order_no": "o-" + session, "reference_number": "r-" + session,
		"timestamp_utc": time.Now().UTC().Format("2006-01-02 15:04:05")}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func pgRefund(session string) map[string]any {
	return map[string]any{"session_id": session, "operation": "refund", "source": "pg", "amount": "1.000",
		"reference_number": "op-" + session, "result": "success", "success": true,
		"timestamp_utc": time.Now().UTC().Format("2006-01-02 15:04:05"),
		"txn":           map[string]any{"amount": "1.000", "currency_code": "KWD", "session_id": "c-" + session, "state": "refunded"}}
}

func openFindings(tb testing.TB, m *Main, code ledger.Code) map[string]bool {
	tb.Helper()
	rows, err := m.db.Conn().Query(context.Background(), "SELECT session_id FROM findings WHERE status = 'open' AND code = ?", string(code))
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			tb.Fatal(err)
		}
		out[s] = true
	}
	return out
}

// TestReliability_PoisonAmidBatch: an authentic webhook whose amount no
// Decimal(38, 8) holds, and a message whose receive time DateTime cannot
// hold (the driver would silently store another time), in the middle of
// ordinary traffic: the ordinary webhooks are stored at once, the two are
// kept whole and raised, nothing is retried forever. (A value the database
// itself refuses at insert is isolated by the writer's bisection:
// TestWriter_PoisonIsolated.)
func TestReliability_PoisonAmidBatch(t *testing.T) {
	ns, db, m, pub := mustRig(t, func(cfg *Config) {
		cfg.BatchWait = 300 * time.Millisecond // the poison and the others share a batch
	})

	publishAt(t, pub, signed(payment("huge", map[string]any{"amount": strings.Repeat("9", 35)})), time.Now())
	for i := range 10 {
		publishAt(t, pub, signed(payment(fmt.Sprintf("ok-%02d", i), nil)), time.Now())
	}
	publishAt(t, pub, signed(payment("far-future", nil)), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC))
	for i := 10; i < 20; i++ {
		publishAt(t, pub, signed(payment(fmt.Sprintf("ok-%02d", i), nil)), time.Now())
	}
	start := time.Now()
	waitFor(t, "the 20 ordinary webhooks stored", 10*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 20
	})
	t.Logf("20 webhooks behind two poison ones stored in %s", time.Since(start).Round(time.Millisecond))
	waitFor(t, "the two kept whole", 10*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM unreadable_webhooks WHERE body != ''") == 2
	})
	if n := chtest.Count(t, db, "SELECT count() FROM unreadable_webhooks WHERE session_id = 'far-future' AND field = 'received_at' AND toYear(received_at) < 2100"); n != 1 {
		t.Fatal("the message with an impossible receive time is not kept with its reason")
	}
	waitFor(t, "everything settled", 10*time.Second, func() bool {
		info := consumerInfo(t, ns.ClientURL(), m.Config.Consumer)
		return info.NumAckPending == 0 && info.NumPending == 0
	})
	if n := chtest.Count(t, db, "SELECT count() FROM payment_events"); n != 20 {
		t.Fatalf("payment_events: %d rows, want 20 (no retry inserts a row twice)", n)
	}
	if _, err := m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := openFindings(t, m, ledger.UnreadableWebhook); !got["huge"] || !got["far-future"] || len(got) != 2 {
		t.Fatalf("UNREADABLE_WEBHOOK raised for %v, want huge and far-future", got)
	}
}

// TestReliability_DelimitersInText: every text field carrying a delimiter,
// quotes, a newline, a NUL or a backslash: passes and run-once succeed.
func TestReliability_DelimitersInText(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
	cfg := testConfig(t, ns.ClientURL(), db)
	m := MustOpenMain(t, cfg)
	pub := publisher(t, ns.ClientURL())

	const odd = "a|b'c\"d\ne\x00f\\g,h;i\tj"
	for i, v := range []string{odd, "refund|void", "|", "'", "\"", "\n", "\x00"} {
		s := fmt.Sprintf("s%d%s", i, v)
		p := payment(s, map[string]any{"state": "paid" + v, "order_no": v, "reference_number": v, "currency_code": v,
			"gateway_account": v, "gateway_name": v, "payment_type": v, "result": v,
			"transactions": []any{map[string]any{"session_id": "child" + v, "state": v, "amount": "1", "currency_code": v}}})
		op := map[string]any{"session_id": s, "operation": v, "source": v, "amount": "1.000", "reference_number": "op" + v,
			"order_no": v, "result": v, "pg_code": v,
			"txn": map[string]any{"amount": "2.000", "currency_code": v, "session_id": "child" + v, "state": v}}
		again := map[string]any{}
		for k, x := range op {
			again[k] = x
		}
		again["operation"] = v + "2" // a conflicting duplicate, so variants cross too
		for _, body := range []map[string]any{p, op, again} {
			publishAt(t, pub, signed(body), time.Now())
		}
	}
	waitFor(t, "everything stored", 20*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 21
	})
	rep, err := m.Pass(context.Background())
	if err != nil || rep.ParentsFailed != 0 {
		t.Fatalf("pass: %+v %v", rep, err)
	}
	if rep.Raised == 0 {
		t.Fatal("no finding raised: the operations were not read")
	}
	once := NewMain(cfg, natstest.Logger(t))
	if err := once.RunOnce(context.Background()); err != nil {
		t.Fatalf("run-once: %v", err)
	}
	var detail string
	if err := db.Conn().QueryRow(context.Background(),
		"SELECT detail FROM findings WHERE code = 'CONFLICTING_DUPLICATE' AND session_id = ?", "s1refund|void").Scan(&detail); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(detail, "refund|void") {
		t.Fatalf("detail lost the text: %q", detail)
	}
}

// TestReliability_LateStored: deliveries received before a pass but stored
// after it (a NATS outage spooled them, the consumer was down) are evaluated
// by the next pass.
func TestReliability_LateStored(t *testing.T) {
	_, db, m, pub := mustRig(t, nil)
	first, err := m.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	received := first.Started.Add(-150 * time.Second)
	for i := range 10 {
		s := fmt.Sprintf("late-%02d", i)
		publishAt(t, pub, signed(payment(s, nil)), received)
		publishAt(t, pub, signed(pgRefund(s)), received)
	}
	waitFor(t, "the late deliveries stored", 20*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 20
	})
	rep, err := m.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Full {
		t.Fatal("the second pass is a full one: this test needs an incremental pass")
	}
	if got := openFindings(t, m, ledger.PGSideOperation); len(got) != 10 {
		t.Fatalf("PG_SIDE_OPERATION for %d of 10 late-stored parents", len(got))
	}
}

// TestReliability_OrdersAfterFirstPass: merchant orders loaded after a pass
// (with an updated_at of their own, in the past) are checked by the next.
func TestReliability_OrdersAfterFirstPass(t *testing.T) {
	_, db, m, pub := mustRig(t, nil)
	var orders []ottusim.Order
	for i := range 10 {
		s := fmt.Sprintf("ord-%02d", i)
		publishAt(t, pub, signed(payment(s, nil)), time.Now())
		orders = append(orders, ottusim.Order{OrderNo: "o-" + s, Amount: "11.000", Currency: "KWD"})
	}
	waitFor(t, "stored", 20*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 10
	})
	if _, err := m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	insertOrders(t, db, orders)
	if err := db.Conn().Exec(context.Background(), "INSERT INTO merchant_orders (order_no, amount, currency_code, updated_at) "+
		"SELECT 'o-ord-00', toDecimal128(12, 8), 'KWD', toDateTime('2020-01-01 00:00:00')"); err != nil {
		t.Fatal(err)
	}
	rep, err := m.Pass(context.Background())
	if err != nil || rep.Full {
		t.Fatalf("pass 2: %+v %v", rep, err)
	}
	if got := openFindings(t, m, ledger.OrderAmountMismatch); len(got) != 10 {
		t.Fatalf("ORDER_AMOUNT_MISMATCH for %d of 10 parents whose orders came after the first pass", len(got))
	}
}

// newReceiver starts a receiver of alerts, closed when the test ends, and
// returns it with its URL.
func newReceiver(t *testing.T) (*receiver, string) {
	rcv := &receiver{posted: map[string]int{}}
	sink := httptest.NewServer(rcv)
	t.Cleanup(sink.Close)
	return rcv, sink.URL
}

// receiver is an alert endpoint whose behaviour a test sets.
type receiver struct {
	mu     sync.Mutex
	answer func(p alertBody) int
	posted map[string]int // session -> times received in a POST that was answered 200
	gets   int
	all    int // POSTs, whatever the answer
}

func (r *receiver) posts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.all
}

type alertBody struct {
	Findings []struct {
		SessionID string `json:"session_id"`
	} `json:"findings"`
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Method != http.MethodPost {
		r.gets++
		return
	}
	r.all++
	b, _ := io.ReadAll(req.Body)
	var p alertBody
	_ = json.Unmarshal(b, &p)
	code := http.StatusOK
	if r.answer != nil {
		code = r.answer(p)
	}
	if code == http.StatusOK {
		for _, f := range p.Findings {
			r.posted[f.SessionID]++
		}
	}
	w.WriteHeader(code)
}

func (r *receiver) received() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.posted {
		out[k] = v
	}
	return out
}

// TestReliability_Alerts: a receiver that first answered 302 gets every
// finding once its URL is fixed; one that refuses one finding (400) and large
// alerts (413) gets all the others.
func TestReliability_Alerts(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
	rcv, sinkURL := newReceiver(t)
	moved := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, sinkURL, http.StatusFound)
	}))
	defer moved.Close()
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.AlertURL = moved.URL
	m := MustOpenMain(t, cfg)
	pub := publisher(t, ns.ClientURL())
	for i := range 5 {
		publishAt(t, pub, signed(payment(fmt.Sprintf("sb-%d", i), map[string]any{"is_sandbox": true})), time.Now())
	}
	waitFor(t, "stored", 20*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 5
	})
	rep, err := m.Pass(context.Background())
	if err != nil || rep.Raised != 5 || rep.Alerted != 0 || !strings.Contains(rep.AlertError, "redirect") {
		t.Fatalf("pass behind a 302: %+v %v", rep, err)
	}
	m.Config.AlertURL = sinkURL // the operator fixes the URL
	if rep, err = m.Pass(context.Background()); err != nil || rep.Alerted != 5 {
		t.Fatalf("pass after the fix: %+v %v", rep, err)
	}
	if got := rcv.received(); len(got) != 5 {
		t.Fatalf("the receiver got %v, want the 5 findings", got)
	}

	// Now a receiver that refuses one finding and any alert over 3 findings.
	rcv.mu.Lock()
	rcv.answer = func(p alertBody) int {
		if len(p.Findings) > 3 {
			return http.StatusRequestEntityTooLarge
		}
		for _, f := range p.Findings {
			if f.SessionID == "more-3" {
				return http.StatusBadRequest
			}
		}
		return http.StatusOK
	}
	rcv.mu.Unlock()
	for i := range 8 {
		publishAt(t, pub, signed(payment(fmt.Sprintf("more-%d", i), map[string]any{"is_sandbox": true})), time.Now())
	}
	waitFor(t, "stored", 20*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 13
	})
	if rep, err = m.Pass(context.Background()); err != nil || rep.Alerted != 7 || rep.AlertsPending != 0 || rep.AlertsParked != 1 {
		t.Fatalf("pass against a picky receiver: %+v %v", rep, err)
	}
	// The finding it refuses alone is parked, not sent again at every pass.
	posts := rcv.posts()
	if rep, err = m.Pass(context.Background()); err != nil || rep.AlertsParked != 1 || rcv.posts() != posts {
		t.Fatalf("next pass sent the parked finding again: %+v %v, %d more posts", rep, err, rcv.posts()-posts)
	}
	if n := chtest.Count(t, db, "SELECT alerts_parked FROM recon_runs WHERE run_id = '"+rep.ID+"'"); n != 1 {
		t.Fatalf("recon_runs.alerts_parked %d, want 1", n)
	}
	got := rcv.received()
	for s, n := range got {
		if n != 1 {
			t.Fatalf("%s alerted %d times", s, n)
		}
	}
	if len(got) != 12 || got["more-3"] != 0 {
		t.Fatalf("received %v: want 12 findings, all but more-3", got)
	}
	if rcv.gets != 0 {
		t.Fatalf("%d GETs reached the receiver", rcv.gets)
	}
}
