package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
	"github.com/ottu-recon/ottu-recon/internal/ottusim"
)

// confirmation returns a finding's confirmation text.
func confirmation(t *testing.T, m *Main, session string, code ledger.Code) string {
	t.Helper()
	var c string
	if err := m.db.Conn().QueryRow(context.Background(), "SELECT confirmation FROM findings WHERE session_id = ? AND code = ?",
		session, string(code)).Scan(&c); err != nil {
		t.Fatalf("%s %s: %v", session, code, err)
	}
	return c
}

// TestPSQ: reconcile asks Ottu's Payment Status Query (the simulator's Ottu
// API, which keeps Ottu's throttle) about parents whose findings need Ottu's
// word: a missing operation Ottu's record lists is confirmed; an over-refund
// resting on a refund Ottu never made is contradicted and raises
// REPLAYED_WEBHOOK; an operation for a payment Ottu does not know raises it
// too. Ottu's answer is stored as a delivery. Within 30 minutes nothing is
// asked again; a 429 pauses every question.
func TestPSQ(t *testing.T) {
	hmacKey := []byte("psq-key")
	now := time.Now().UTC()
	gen := &ottusim.Generator{Now: now, Grace: 10 * time.Minute}
	missing, over, orphan := gen.Parent(ottusim.Kind(ledger.MissingOperation)), gen.Parent(ottusim.Kind(ledger.OverRefund)),
		gen.Parent(ottusim.Kind(ledger.OrphanOperation))
	api := &ottusim.API{Key: "api-key", HMACKey: hmacKey}
	api.Add(missing, over) // the orphan's parent is unknown to Ottu: forged
	var limit429 atomic.Bool
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if limit429.Load() {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		api.ServeHTTP(w, r)
	}))
	defer srv.Close()
	_, db, m, pub := mustRig(t, askingOttu(srv.URL, hmacKey))
	n := 0
	for _, p := range []ottusim.Parent{missing, over, orphan} {
		for _, w := range p.Webhooks {
			publishAt(t, pub, ottusim.Sign(w.Object, events.SchemeA, hmacKey), w.At)
			n++
		}
	}
	waitFor(t, "stored", 20*time.Second, func() bool { return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == uint64(n) })

	// Pass 1 raises the findings, alerts them, then asks Ottu about them;
	// pass 2 reads Ottu's answers.
	rep, err := m.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Raised == 0 || rep.Inquiries != 3 || rep.InquiryErrors != 0 || calls.Load() != 3 {
		t.Fatalf("pass 1: %d inquiries answered, %d calls; want 3 (two records, one documented 404) (%+v)", rep.Inquiries, calls.Load(), rep)
	}
	if _, err := m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := confirmation(t, m, missing.SessionID, ledger.MissingOperation); !strings.HasPrefix(c, "confirmed by Ottu") {
		t.Fatalf("missing operation: confirmation %q", c)
	}
	if c := confirmation(t, m, over.SessionID, ledger.OverRefund); !strings.HasPrefix(c, "contradicted by Ottu") {
		t.Fatalf("over-refund: confirmation %q", c)
	}
	replayed := openFindings(t, m, ledger.ReplayedWebhook)
	if !replayed[over.SessionID] || !replayed[orphan.SessionID] || replayed[missing.SessionID] {
		t.Fatalf("REPLAYED_WEBHOOK for %v; want the over-refund's and the orphan's parents only", replayed)
	}
	if n := chtest.Count(t, db, "SELECT count() FROM webhooks_raw WHERE source = 'inquiry'"); n != 2 {
		t.Fatalf("Ottu's answers stored as deliveries: %d, want 2", n)
	}

	// Another pass at once: Ottu's throttle (30 minutes) means no new question.
	if rep, _ = m.Pass(context.Background()); rep.Inquiries != 0 || calls.Load() != 3 {
		t.Fatalf("pass 3 asked again: %d inquiries, %d calls", rep.Inquiries, calls.Load())
	}
	if st := api.Stats(); st.Throttled != 0 || st.RateLimited != 0 {
		t.Fatalf("Ottu's throttle was broken: %+v", st)
	}

	// 40 minutes later Ottu may be asked again, but answers 429: one call,
	// then every question waits.
	limit429.Store(true)
	m.Now = func() time.Time { return now.Add(40 * time.Minute) }
	if rep, err = m.Pass(context.Background()); err != nil || rep.Inquiries != 0 || calls.Load() != 4 {
		t.Fatalf("pass behind a 429: %+v %v, %d calls; want one call and a pause", rep, err, calls.Load())
	}
	if rep, _ = m.Pass(context.Background()); calls.Load() != 4 {
		t.Fatalf("asked during the pause: %d calls", calls.Load())
	}
}

// hangingServer accepts connections and never answers.
func hangingServer(t *testing.T) (url string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int32{}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String(), accepted
}

// TestDependable_OttuHangs: with Ottu's API accepting connections and never
// answering, 20 payments pending past the grace (worth asking about) and one
// gateway-side refund: every pass ends within RECON_PASS_TIMEOUT without
// error, with the PG_SIDE_OPERATION written and alerted; a question that got
// no answer counts as asked (it is not asked again at once), and after three
// of them the circuit opens and nothing more is asked.
func TestDependable_OttuHangs(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
	sink, alertsURL := alertReceiver(t, "k")
	ottuURL, accepted := hangingServer(t)
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.OttuAPIURL, cfg.OttuAPIKey, cfg.HMACKeys = ottuURL, "api-key", [][]byte{signKey}
	cfg.AlertURL, cfg.AlertHMACKey = alertsURL, "k"
	cfg.PassTimeout = 8 * time.Second
	m := MustOpenMain(t, cfg)
	pub := publisher(t, ns.ClientURL())
	hourAgo := time.Now().Add(-time.Hour)
	old := hourAgo.UTC().Format("2006-01-02 15:04:05")
	for i := range 20 {
		publishAt(t, pub, signed(payment(fmt.Sprintf("pending-%02d", i), map[string]any{"state": "pending", "timestamp_utc": old})), hourAgo)
	}
	publishAt(t, pub, signed(payment("pg", nil)), time.Now())
	publishAt(t, pub, signed(pgRefund("pg")), time.Now())
	waitFor(t, "stored", 20*time.Second, func() bool { return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 22 })

	for pass := 1; pass <= 4; pass++ {
		rep, took, err := scheduled(t, m)
		if err != nil {
			t.Fatalf("pass %d failed after %s: %v", pass, took, err)
		}
		if took >= cfg.PassTimeout {
			t.Fatalf("pass %d took %s, RECON_PASS_TIMEOUT %s", pass, took, cfg.PassTimeout)
		}
		if pass == 1 && (!openFindings(t, m, ledger.PGSideOperation)["pg"] || rep.Alerted == 0) {
			t.Fatalf("pass 1: PG_SIDE_OPERATION not raised and alerted: %+v", rep)
		}
		t.Logf("pass %d: %s, %d asked without an answer, %q", pass, took.Round(time.Millisecond), rep.InquiryErrors, rep.InquiryError)
	}
	if got, _ := sink.snapshot(); len(got) == 0 {
		t.Fatal("no alert reached the receiver")
	}
	asked := chtest.Count(t, db, "SELECT count() FROM ottu_inquiries")
	distinct := chtest.Count(t, db, "SELECT uniqExact(session_id) FROM ottu_inquiries")
	if asked != distinct || asked < 3 || int(asked) != int(accepted.Load()) {
		t.Fatalf("%d questions recorded for %d parents, %d connections: want each parent asked once, every question recorded", asked, distinct, accepted.Load())
	}
	if v := testutil.ToFloat64(m.inquirer.circuit); v != 1 {
		t.Fatalf("circuit open: %v after %d unanswered questions", v, asked)
	}
	before := accepted.Load()
	if rep, _, err := scheduled(t, m); err != nil || accepted.Load() != before || !strings.Contains(rep.InquiryError, "did not answer") {
		t.Fatalf("with the circuit open: %+v %v, %d new connections", rep, err, accepted.Load()-before)
	}
}

// TestDependable_OttuAnswers: only a verdict is a verdict. Parents with a
// missing operation (which needs Ottu's word) are asked about; Ottu's answer
// is, for each: its record (confirmed), its documented 404 (no such payment:
// REPLAYED_WEBHOOK), a signed record whose timestamp_utc cannot be read, the
// signed record of another payment, a proxy's 404 page, a 502. The last four
// raise nothing and confirm nothing; each is recorded with no verdict and its
// reason.
func TestDependable_OttuAnswers(t *testing.T) {
	now := time.Now().UTC()
	gen := &ottusim.Generator{Now: now, Grace: 10 * time.Minute}
	cases := []string{"record", "documented-404", "unreadable", "other-payment", "proxy-404", "bad-gateway"}
	parents := map[string]ottusim.Parent{}
	bySession := map[string]string{}
	for _, c := range cases {
		p := gen.Parent(ottusim.Kind(ledger.MissingOperation))
		parents[c], bySession[p.SessionID] = p, c
	}
	stranger := gen.Parent(ottusim.PurchaseRefunded)
	answer := func(w http.ResponseWriter, code int, body string) {
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
	sign := func(truth map[string]any) string { return string(ottusim.Sign(truth, events.SchemeA, signKey)) }
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			SessionID string `json:"session_id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		p := parents[bySession[req.SessionID]]
		switch bySession[req.SessionID] {
		case "record":
			answer(w, 200, sign(p.Truth))
		case "documented-404":
			answer(w, 404, `{"detail": "Not found."}`)
		case "unreadable":
			truth := ottusimClone(p.Truth)
			truth["timestamp_utc"] = "yesterday-ish" // unsigned: the signature still holds
			answer(w, 200, sign(truth))
		case "other-payment":
			answer(w, 200, sign(stranger.Truth))
		case "proxy-404":
			answer(w, 404, "<html><body><h1>404 Not Found</h1>nginx</body></html>")
		default:
			answer(w, 502, "<html>bad gateway</html>")
		}
	}))
	defer api.Close()
	_, db, m, pub := mustRig(t, askingOttu(api.URL, signKey))
	n := 0
	for _, p := range parents {
		for _, w := range p.Webhooks {
			publishAt(t, pub, ottusim.Sign(w.Object, events.SchemeA, signKey), w.At)
			n++
		}
	}
	waitFor(t, "stored", 20*time.Second, func() bool { return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == uint64(n) })
	for range 2 { // the first asks, the second reads the answers
		if _, err := m.Pass(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if asked := chtest.Count(t, db, "SELECT uniqExact(session_id) FROM ottu_inquiries"); asked != uint64(len(cases)) {
		t.Fatalf("asked about %d parents, want %d", asked, len(cases))
	}
	replayed := openFindings(t, m, ledger.ReplayedWebhook)
	reasons := map[string]string{"unreadable": "cannot be read", "other-payment": "not the payment asked",
		"proxy-404": "not Ottu's documented answer", "bad-gateway": "502"}
	for _, c := range cases {
		p := parents[c]
		conf := confirmation(t, m, p.SessionID, ledger.MissingOperation)
		var verdict, reason string
		if err := m.db.Conn().QueryRow(context.Background(), "SELECT verdict, error FROM ottu_inquiries WHERE session_id = ?",
			p.SessionID).Scan(&verdict, &reason); err != nil {
			t.Fatal(err)
		}
		switch c {
		case "record":
			if !strings.HasPrefix(conf, "confirmed") || replayed[p.SessionID] || verdict != "found" {
				t.Errorf("%s: confirmation %q, replayed %v, verdict %q", c, conf, replayed[p.SessionID], verdict)
			}
		case "documented-404":
			if !replayed[p.SessionID] || verdict != "not_found" {
				t.Errorf("%s: replayed %v, verdict %q", c, replayed[p.SessionID], verdict)
			}
		default:
			if conf != "" || replayed[p.SessionID] || verdict != "" || !strings.Contains(reason, reasons[c]) {
				t.Errorf("%s: confirmation %q, replayed %v, verdict %q, reason %q (want no verdict: %q)",
					c, conf, replayed[p.SessionID], verdict, reason, reasons[c])
			}
		}
	}
	if n := chtest.Count(t, db, "SELECT count() FROM webhooks_raw WHERE source = 'inquiry'"); n != 1 {
		t.Fatalf("%d of Ottu's answers stored as deliveries, want only the record", n)
	}
}

func ottusimClone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// askingOttu points reconcile at an Ottu status API at url (its key
// "api-key") whose records are signed with key.
func askingOttu(url string, key []byte) func(*Config) {
	return func(cfg *Config) { cfg.OttuAPIURL, cfg.OttuAPIKey, cfg.HMACKeys = url, "api-key", [][]byte{key} }
}
