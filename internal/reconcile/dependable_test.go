package reconcile

import (
	"bytes"
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
	"github.com/ottu-recon/ottu-recon/internal/ingest"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
	"github.com/ottu-recon/ottu-recon/internal/nettest"
	"github.com/ottu-recon/ottu-recon/internal/ottusim"
)

// scheduled runs a pass as the schedule does: bounded by RECON_PASS_TIMEOUT.
func scheduled(t *testing.T, m *Main) (ledger.Run, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), m.Config.PassTimeout)
	defer cancel()
	start := time.Now()
	rep, err := m.Pass(ctx)
	return rep, time.Since(start), err
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
	sink := &alertSink{key: []byte("k")}
	alerts := httptest.NewServer(sink)
	defer alerts.Close()
	ottuURL, accepted := hangingServer(t)
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.OttuAPIURL, cfg.OttuAPIKey, cfg.HMACKeys = ottuURL, "api-key", [][]byte{signKey}
	cfg.AlertURL, cfg.AlertHMACKey = alerts.URL, "k"
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

// TestDependable_SlowSingleReceiver: a receiver that takes one finding per
// request (413 for more) and answers slowly, passes too short to send
// everything: all 12 findings arrive exactly once over four passes, and no
// pass fails.
func TestDependable_SlowSingleReceiver(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
	var mu sync.Mutex
	got, requests := map[string]int{}, 0
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(500 * time.Millisecond) // the receiver's own slowness
		var p alertBody
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &p)
		mu.Lock()
		defer mu.Unlock()
		requests++
		if len(p.Findings) > 1 {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		for _, f := range p.Findings {
			got[f.SessionID]++
		}
	}))
	defer rcv.Close()
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.AlertURL = rcv.URL
	cfg.PassTimeout = 4 * time.Second // 8 receiver answers: the 2 s and 15 s, scaled
	m := MustOpenMain(t, cfg)
	pub := publisher(t, ns.ClientURL())
	for i := range 12 {
		s := fmt.Sprintf("pg-%02d", i)
		publishAt(t, pub, signed(payment(s, nil)), time.Now())
		publishAt(t, pub, signed(pgRefund(s)), time.Now())
	}
	waitFor(t, "stored", 20*time.Second, func() bool { return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 24 })
	for pass := 1; pass <= 4; pass++ {
		rep, took, err := scheduled(t, m)
		if err != nil {
			t.Fatalf("pass %d failed after %s: %v", pass, took, err)
		}
		t.Logf("pass %d: %s, alerted %d, pending %d, %q", pass, took.Round(time.Millisecond), rep.Alerted, rep.AlertsPending, rep.AlertError)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 12 {
		t.Fatalf("%d of 12 findings delivered in four passes (%d requests)", len(got), requests)
	}
	for s, n := range got {
		if n != 1 {
			t.Fatalf("%s delivered %d times", s, n)
		}
	}
	if n := chtest.Count(t, db, "SELECT count() FROM findings WHERE alerted_at IS NULL"); n != 0 {
		t.Fatalf("%d delivered findings not recorded as alerted", n)
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
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
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
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.OttuAPIURL, cfg.OttuAPIKey, cfg.HMACKeys = api.URL, "api-key", [][]byte{signKey}
	m := MustOpenMain(t, cfg)
	pub := publisher(t, ns.ClientURL())
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
		if err := m.DB().Conn().QueryRow(context.Background(), "SELECT verdict, error FROM ottu_inquiries WHERE session_id = ?",
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

// TestDependable_NATSRebuiltEmpty: the NATS server is replaced by one with
// empty storage (disk lost): ingest and reconcile create the stream, the
// store consumer and the lease bucket again by themselves; the webhooks
// posted after are stored, and scheduled passes go on.
func TestDependable_NATSRebuiltEmpty(t *testing.T) {
	addr := nettest.FreeAddr(t)
	first := natstest.MustOpenServer(t, addr, t.TempDir())
	db := chtest.MustOpenDB(t)
	cfg := testConfig(t, first.ClientURL(), db)
	cfg.LeaseTTL = 2 * time.Second
	m := MustOpenMain(t, cfg)
	icfg := ingest.DefaultConfig()
	icfg.Listen, icfg.HMACKeys, icfg.NATSURL, icfg.SpoolDir = "127.0.0.1:0", [][]byte{signKey}, first.ClientURL(), t.TempDir()
	im := ingest.NewMain(icfg, natstest.Logger(t))
	if err := im.Open(); err != nil {
		t.Fatal(err)
	}
	defer im.Close(context.Background())
	post := func(session string) {
		resp, err := http.Post(im.URL()+"/webhooks/ottu", "application/json", bytes.NewReader(signed(payment(session, nil))))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s answered %d", session, resp.StatusCode)
		}
	}
	for i := range 5 {
		post(fmt.Sprintf("before-%d", i))
	}
	waitFor(t, "stored before", 20*time.Second, func() bool { return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 5 })
	waitFor(t, "the lease", 10*time.Second, func() bool { held, _ := m.lease.Held(); return held })

	first.Close()
	natstest.MustOpenServer(t, addr, t.TempDir()) // same address, empty storage
	for i := range 10 {
		post(fmt.Sprintf("after-%d", i))
	}
	waitFor(t, "the 10 webhooks posted after the rebuild stored", 60*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 15
	})
	waitFor(t, "the lease again", 20*time.Second, func() bool { held, _ := m.lease.Held(); return held })
	if _, err := m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	metrics := nettestMetrics(t, m.URL()+"/metrics")
	for _, what := range []string{"consumer", "lease_bucket"} {
		if !strings.Contains(metrics, `ottu_reconcile_nats_recreated_total{what="`+what+`"}`) {
			t.Errorf("the re-created %s is not counted", what)
		}
	}
	if n := chtest.Count(t, db, "SELECT toUInt64(count() - uniqExact(delivery_id)) FROM webhooks_raw"); n != 0 {
		t.Fatalf("%d deliveries stored twice", n)
	}
}

func nettestMetrics(t *testing.T, url string) string {
	t.Helper()
	_, body := nettest.Get(t, url)
	return body
}
