package reconcile

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	if err := m.DB().Conn().QueryRow(context.Background(), "SELECT confirmation FROM findings WHERE session_id = ? AND code = ?",
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
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
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
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.OttuAPIURL, cfg.OttuAPIKey, cfg.HMACKeys = srv.URL, "api-key", [][]byte{hmacKey}
	m := MustOpenMain(t, cfg)
	pub := publisher(t, ns.ClientURL())
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
