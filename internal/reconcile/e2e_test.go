package reconcile

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/ottu-recon/ottu-recon/internal/alert"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
	"github.com/ottu-recon/ottu-recon/internal/ottusim"
)

// alertSink records the alerts POSTed to it.
type alertSink struct {
	mu     sync.Mutex
	key    []byte
	alerts []alert.Payload
	badSig int
}

func (s *alertSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Header.Get(alert.SignatureHeader) != alert.Sign(s.key, body) {
		s.badSig++
	}
	var p alert.Payload
	if err := json.Unmarshal(body, &p); err == nil {
		s.alerts = append(s.alerts, p)
	}
}

func (s *alertSink) snapshot() ([]alert.Payload, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]alert.Payload(nil), s.alerts...), s.badSig
}

type finding struct {
	session string
	code    ledger.Code
}

func findingSet(recs []ledger.Record) map[finding]bool {
	out := map[finding]bool{}
	for _, r := range recs {
		out[finding{r.SessionID, r.Code}] = true
	}
	return out
}

func diff(got, want map[finding]bool) string {
	var lines []string
	for f := range want {
		if !got[f] {
			lines = append(lines, fmt.Sprintf("missing %s %s", f.code, f.session))
		}
	}
	for f := range got {
		if !want[f] {
			lines = append(lines, fmt.Sprintf("unexpected %s %s", f.code, f.session))
		}
	}
	sort.Strings(lines)
	return fmt.Sprint(lines)
}

func publishAt(tb testing.TB, p *nats.Publisher, body []byte, at time.Time) {
	tb.Helper()
	m, err := events.ParseObject(body)
	if err != nil {
		tb.Fatal(err)
	}
	kind := events.GuessKind(m) // as ingest does for an authentic body it cannot read
	env := events.Envelope{ID: events.DeliveryID(kind, m), Kind: kind, ReceivedAt: at.UTC(), Scheme: events.SchemeA, Body: body}
	if _, err := p.Publish(context.Background(), env); err != nil {
		tb.Fatal(err)
	}
}

func TestReconcile_EndToEnd(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
	sink, alertsURL := alertReceiver(t, "alert-key")
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.AlertURL, cfg.AlertHMACKey = alertsURL, "alert-key"
	m := MustOpenMain(t, cfg)

	// recon.findings listener.
	nc, err := natsgo.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	announced, err := nc.SubscribeSync(nats.FindingsSubject)
	if err != nil {
		t.Fatal(err)
	}

	now := time.Now().UTC()
	gen := &ottusim.Generator{Now: now, Grace: cfg.Grace}
	var parents []ottusim.Parent
	for range 3 {
		for _, k := range append(append([]ottusim.Kind(nil), ottusim.AnomalyKinds...), ottusim.CleanKinds...) {
			parents = append(parents, gen.Parent(k))
		}
	}
	key := []byte("k")
	want := map[finding]bool{}
	var missing ottusim.Parent
	distinct := map[string]bool{}
	pub := publisher(t, ns.ClientURL())
	var orders []ottusim.Order
	for _, p := range parents {
		for _, c := range p.Expect {
			want[finding{p.SessionID, c}] = true
		}
		if p.Kind == ottusim.Kind(ledger.MissingOperation) && missing.SessionID == "" {
			missing = p
		}
		if p.Order != nil {
			orders = append(orders, *p.Order)
		}
		for i, w := range p.Webhooks {
			body := ottusim.Sign(w.Object, events.SchemeA, key)
			publishAt(t, pub, body, w.At)
			if i == 0 {
				publishAt(t, pub, body, w.At.Add(time.Second)) // an exact re-delivery
			}
			distinct[string(body)] = true
		}
	}
	insertOrders(t, db, orders)
	waitFor(t, "every webhook stored", 60*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw")+chtest.Count(t, db, "SELECT count() FROM unreadable_webhooks") == uint64(len(distinct))
	})

	// Pass 1: exactly the expected findings, one alert carrying each once.
	rep, err := m.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Full || rep.ParentsEvaluated != len(parents) || rep.Raised != len(want) || rep.AlertError != "" {
		t.Fatalf("pass 1: %+v (want %d parents, %d raised)", rep, len(parents), len(want))
	}
	store := &clickhouse.Store{DB: db}
	open, err := store.OpenFindings(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := findingSet(open); len(got) != len(want) || diff(got, want) != "[]" {
		t.Fatalf("findings differ: %s", diff(got, want))
	}
	got, bad := sink.snapshot()
	if len(got) != 1 || bad != 0 {
		t.Fatalf("alerts after pass 1: got %d (bad signatures %d), want 1", len(got), bad)
	}
	alerted := map[finding]bool{}
	for _, f := range got[0].Findings {
		k := finding{f.SessionID, ledger.Code(f.Code)}
		if alerted[k] {
			t.Fatalf("finding %v alerted twice", k)
		}
		alerted[k] = true
		if f.Severity != string(ledger.SeverityOf(k.code)) || f.Detail == "" || f.FirstSeen.IsZero() {
			t.Fatalf("alerted finding %+v", f)
		}
	}
	if diff(alerted, want) != "[]" {
		t.Fatalf("alert differs: %s", diff(alerted, want))
	}
	msg, err := announced.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("recon.findings: %v", err)
	}
	var ann alert.Payload
	if err := json.Unmarshal(msg.Data, &ann); err != nil || len(ann.Findings) != len(want) {
		t.Fatalf("recon.findings: %v, %d findings, want %d", err, len(ann.Findings), len(want))
	}

	// Pass 2, nothing new: no alert, nothing raised or resolved, last_seen moves on.
	rep, err = m.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Full || rep.Raised != 0 || rep.Resolved != 0 || rep.Open != len(want) || rep.Alerted != 0 {
		t.Fatalf("pass 2: %+v", rep)
	}
	if got, _ := sink.snapshot(); len(got) != 1 {
		t.Fatalf("alerts after pass 2: got %d, want still 1", len(got))
	}

	// The missing operation webhook arrives late: pass 3 resolves that finding.
	var child string
	for _, w := range missing.Webhooks {
		if tx, ok := w.Object["transactions"].([]any); ok {
			child = tx[0].(map[string]any)["session_id"].(string)
		}
	}
	late := map[string]any{"amount": "1.000", "operation": "refund", "order_no": "", "reference_number": "late-op",
		"result": "success", "session_id": missing.SessionID, "source": "input", "success": true,
		"timestamp_utc": now.Format("2006-01-02 15:04:05"),
		"txn":           map[string]any{"amount": "1.000", "currency_code": "", "session_id": child, "state": "refunded"}}
	publishAt(t, pub, ottusim.Sign(late, events.SchemeA, key), time.Now())
	waitFor(t, "the late webhook stored", 30*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM operations WHERE reference_number = 'late-op'") == 1
	})
	rep, err = m.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Resolved != 1 || rep.Raised != 0 || rep.Open != len(want)-1 {
		t.Fatalf("pass 3: %+v", rep)
	}
	if n := chtest.Count(t, db, "SELECT count() FROM findings WHERE session_id = ? AND code = 'MISSING_OPERATION' AND status = 'resolved'",
		missing.SessionID); n != 1 {
		t.Fatal("the missing operation finding is not resolved")
	}
	if n := chtest.Count(t, db, "SELECT count() FROM recon_runs WHERE error = ''"); n != 3 {
		t.Fatalf("recon_runs: got %d, want 3", n)
	}
	if got, _ := sink.snapshot(); len(got) != 1 {
		t.Fatalf("alerts after pass 3: got %d, want still 1", len(got))
	}
}

func insertOrders(tb testing.TB, db *clickhouse.DB, orders []ottusim.Order) {
	tb.Helper()
	batch, err := db.Conn().PrepareBatch(context.Background(), "INSERT INTO merchant_orders (order_no, amount, currency_code, updated_at)")
	if err != nil {
		tb.Fatal(err)
	}
	for _, o := range orders {
		a, err := events.ParseAmount(o.Amount)
		if err != nil {
			tb.Fatal(err)
		}
		if err := batch.Append(o.OrderNo, a.Decimal, o.Currency, cmp.Or(o.UpdatedAt, time.Now())); err != nil {
			tb.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		tb.Fatal(err)
	}
}
