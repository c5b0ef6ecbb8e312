package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/nats"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
	"github.com/ottu-recon/ottu-recon/internal/nettest"
	"github.com/ottu-recon/ottu-recon/internal/spool"
)

const testKey = "example-hmac-key-not-real"

func testConfig(tb testing.TB, natsURL string) Config {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.HMACKeys = [][]byte{[]byte("old-rotated-key"), []byte(testKey)}
	cfg.NATSURL = natsURL
	cfg.SpoolDir = filepath.Join(tb.TempDir(), "spool")
	cfg.PublishTimeout = 500 * time.Millisecond
	return cfg
}

// MustOpenMain starts ingest and stops it at the end of the test.
func MustOpenMain(tb testing.TB, cfg Config) *Main {
	tb.Helper()
	m := NewMain(cfg, natstest.Logger(tb))
	if err := m.Open(); err != nil {
		tb.Fatal(err)
	}
	nettest.CloseAtEnd(tb, 10*time.Second, m.Close)
	return m
}

func readExample(tb testing.TB, name string) map[string]any {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "events", "testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	m, err := events.ParseObject(b)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// payment returns E1 made distinct by n, signed with key under scheme A.
func payment(tb testing.TB, n int, key string) []byte {
	m := readExample(tb, "e1_payment_paid.json")
	m["session_id"] = fmt.Sprintf("%040x", n)
	m["reference_number"] = fmt.Sprintf("ref%06d", n)
	return sign(tb, m, events.SchemeA, key)
}

func sign(tb testing.TB, m map[string]any, scheme events.Scheme, key string) []byte {
	tb.Helper()
	delete(m, "signature")
	m["signature"] = events.Sign(m, scheme, []byte(key))
	b, err := jsonMarshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func post(tb testing.TB, url, method string, body []byte) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(method, url+"/webhooks/ottu", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func stream(tb testing.TB, url string) jetstream.Stream {
	tb.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := js.Stream(context.Background(), nats.DefaultStreamConfig().Name)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// subjectCounts counts the stream's messages per subject.
func subjectCounts(tb testing.TB, s jetstream.Stream) map[string]uint64 {
	tb.Helper()
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(">"))
	if err != nil {
		tb.Fatal(err)
	}
	return info.State.Subjects
}

func msgIDs(tb testing.TB, s jetstream.Stream) map[string]*jetstream.RawStreamMsg {
	tb.Helper()
	info, err := s.Info(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]*jetstream.RawStreamMsg{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			tb.Fatal(err)
		}
		out[m.Header.Get(natsgo.MsgIdHdr)] = m
	}
	return out
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	nettest.WaitFor(tb, what, 20*time.Second, cond)
}

func TestIngest_StoredBeforeOK(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	m := MustOpenMain(t, testConfig(t, ns.ClientURL()))
	s := stream(t, ns.ClientURL())

	for _, name := range []string{"e1_payment_paid.json", "e2_operation_refund.json", "e3_operation_void_pg.json"} {
		raw, err := os.ReadFile(filepath.Join("..", "events", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		status, body := post(t, m.URL(), http.MethodPost, raw)
		if status != http.StatusOK {
			t.Fatalf("%s: got %d %s, want 200", name, status, body)
		}
		// At 200 the message must already be in the stream: no waiting.
		obj, _ := events.ParseObject(raw)
		kind, _ := events.KindOf(obj)
		id := events.DeliveryID(kind, obj)
		msg, ok := msgIDs(t, s)[id]
		if !ok {
			t.Fatalf("%s: answered 200 but delivery %s is not in the stream", name, id)
		}
		if !bytes.Equal(msg.Data, raw) {
			t.Fatalf("%s: stored body differs from the raw body", name)
		}
		if got, want := msg.Subject, "ottu.webhooks."+string(kind); got != want {
			t.Fatalf("%s: subject %s, want %s", name, got, want)
		}
		if got := msg.Header.Get(nats.HeaderKeyIndex); got != "1" {
			t.Fatalf("%s: key index %s, want 1 (the second configured key)", name, got)
		}
	}
}

func TestIngest_Statuses(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	m := MustOpenMain(t, testConfig(t, ns.ClientURL()))
	s := stream(t, ns.ClientURL())

	good := payment(t, 1, testKey)
	tampered := bytes.Replace(good, []byte(`"amount":"25.500"`), []byte(`"amount":"95.500"`), 1)
	if bytes.Equal(tampered, good) {
		t.Fatal("tampering did not change the body")
	}
	unsigned := readExample(t, "e1_payment_paid.json")
	delete(unsigned, "signature")
	unsignedBody, _ := jsonMarshal(unsigned)
	schemeB := sign(t, readExample(t, "e3_operation_void_pg.json"), events.SchemeB, testKey)
	unknownKind := sign(t, map[string]any{"amount": "1.000", "hello": "world"}, events.SchemeA, testKey)
	// Authentic bodies with values the store cannot hold: answered 200, kept.
	unreadable := func(field string, value any) []byte {
		m := readExample(t, "e1_payment_paid.json")
		if value == nil {
			delete(m, field)
		} else {
			m[field] = value
		}
		return sign(t, m, events.SchemeA, testKey)
	}
	oversized := append([]byte(`{"pad":"`), append(bytes.Repeat([]byte("x"), 1<<20), []byte(`"}`)...)...)

	tests := []struct {
		name     string
		method   string
		body     []byte
		want     int
		rejected bool // kept on the rejected subject
	}{
		{"OK/scheme A", http.MethodPost, good, 200, false},
		{"OK/scheme B", http.MethodPost, schemeB, 200, false},
		{"ErrTampered", http.MethodPost, tampered, 401, true},
		{"ErrUnsigned", http.MethodPost, unsignedBody, 401, true},
		{"ErrWrongKey", http.MethodPost, payment(t, 2, "some-other-key"), 401, true},
		{"ErrTruncated", http.MethodPost, good[:len(good)/2], 400, true},
		{"ErrNotObject", http.MethodPost, []byte(`["a","b"]`), 400, true},
		{"OK/authentic but no known kind", http.MethodPost, unknownKind, 200, false},
		{"OK/authentic, settled_amount not a decimal", http.MethodPost, unreadable("settled_amount", "lots"), 200, false},
		{"OK/authentic, amount with 10 decimals", http.MethodPost, unreadable("amount", "25.5000000001"), 200, false},
		{"OK/authentic, negative amount", http.MethodPost, unreadable("amount", "-25.500"), 200, false},
		{"OK/authentic, amount of 35 digits", http.MethodPost, unreadable("amount", strings.Repeat("9", 35)), 200, false},
		{"OK/authentic, 1969 timestamp", http.MethodPost, unreadable("timestamp_utc", "1969-12-31 23:59:59"), 200, false},
		{"OK/authentic, no session_id", http.MethodPost, unreadable("session_id", nil), 200, false},
		{"ErrOversized", http.MethodPost, oversized, 413, true},
		{"ErrMethod/GET", http.MethodGet, nil, 405, false},
		{"ErrMethod/PUT", http.MethodPut, good, 405, false},
	}
	wantRejected := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, m.URL(), tt.method, tt.body)
			if status != tt.want {
				t.Fatalf("got %d %s, want %d", status, body, tt.want)
			}
			if strings.Contains(body, "hmac") || strings.Contains(body, testKey) {
				t.Fatalf("response leaks internals: %s", body)
			}
		})
		if tt.rejected {
			wantRejected++
		}
	}
	counts := subjectCounts(t, s)
	if got := counts["ottu.rejected"]; got != uint64(wantRejected) {
		t.Fatalf("rejected kept: got %d, want %d (%v)", got, wantRejected, counts)
	}
	if got := counts["ottu.webhooks.payment"] + counts["ottu.webhooks.operation"] + counts["ottu.webhooks.unreadable"]; got != 9 {
		t.Fatalf("verified stored: got %d, want 9 (%v)", got, counts)
	}
	// The tampered delivery is kept byte for byte, with its reason.
	for _, msg := range msgIDs(t, s) {
		if msg.Subject == "ottu.rejected" && bytes.Equal(msg.Data, tampered) {
			if r := msg.Header.Get(nats.HeaderReject); !strings.HasPrefix(r, "bad_signature") {
				t.Fatalf("reason: got %q", r)
			}
			return
		}
	}
	t.Fatal("tampered delivery not kept")
}

func TestIngest_DuplicateStoredOnce(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	m := MustOpenMain(t, testConfig(t, ns.ClientURL()))
	s := stream(t, ns.ClientURL())
	body := payment(t, 7, testKey)
	for i, want := range []string{`"stored"`, `"duplicate"`, `"duplicate"`} {
		status, resp := post(t, m.URL(), http.MethodPost, body)
		if status != 200 || !strings.Contains(resp, want) {
			t.Fatalf("delivery %d: got %d %s, want 200 %s", i, status, resp, want)
		}
	}
	// The same webhook re-serialized (other key order, whitespace) is the same delivery.
	obj, _ := events.ParseObject(body)
	pretty, _ := jsonMarshalIndent(obj)
	if status, resp := post(t, m.URL(), http.MethodPost, pretty); status != 200 || !strings.Contains(resp, `"duplicate"`) {
		t.Fatalf("re-serialized: got %d %s", status, resp)
	}
	if got := subjectCounts(t, s)["ottu.webhooks.payment"]; got != 1 {
		t.Fatalf("stored: got %d, want 1", got)
	}
}

// TestIngest_NATSOutage stops NATS in the middle of a stream of webhooks: every
// one is still answered 200, and every one is in the stream once NATS is back.
func TestIngest_NATSOutage(t *testing.T) {
	storeDir := t.TempDir()
	ns := &nats.Server{Listen: "127.0.0.1:0", StoreDir: storeDir, Logger: natstest.Logger(t)}
	if err := ns.Open(); err != nil {
		t.Fatal(err)
	}
	url := ns.ClientURL()
	m := MustOpenMain(t, testConfig(t, url))

	const before, during = 20, 30
	for i := range before {
		if status, body := post(t, m.URL(), http.MethodPost, payment(t, i, testKey)); status != 200 {
			t.Fatalf("webhook %d: got %d %s", i, status, body)
		}
	}
	ns.Close()
	waitFor(t, "ingest to notice NATS is gone", func() bool { return !m.conn.Connected() })
	for i := before; i < before+during; i++ {
		status, body := post(t, m.URL(), http.MethodPost, payment(t, i, testKey))
		if status != 200 || !strings.Contains(body, `"spooled"`) {
			t.Fatalf("webhook %d during outage: got %d %s, want 200 spooled", i, status, body)
		}
	}
	if got := m.spool.Len(); got != during {
		t.Fatalf("backlog: got %d, want %d", got, during)
	}
	resp, err := http.Get(m.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("readyz during outage with a writable spool: got %d, want 200", resp.StatusCode)
	}

	// NATS comes back on the same address with the same storage.
	restarted := natstest.MustOpenServer(t, strings.TrimPrefix(url, "nats://"), storeDir)
	waitFor(t, "the spool to drain", func() bool { return m.spool.Len() == 0 })
	s := stream(t, restarted.ClientURL())
	ids := msgIDs(t, s)
	for i := range before + during {
		obj, _ := events.ParseObject(payment(t, i, testKey))
		if _, ok := ids[events.DeliveryID(events.KindPayment, obj)]; !ok {
			t.Fatalf("webhook %d missing from the stream after the outage", i)
		}
	}
	if len(ids) != before+during {
		t.Fatalf("stream holds %d messages, want %d", len(ids), before+during)
	}
}

func TestIngest_Endpoints(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	m := MustOpenMain(t, testConfig(t, ns.ClientURL()))
	post(t, m.URL(), http.MethodPost, payment(t, 1, testKey))
	post(t, m.URL(), http.MethodPost, []byte(`nope`))
	for path, want := range map[string]string{
		"/healthz": "alive",
		"/readyz":  "ready",
		"/metrics": `ottu_ingest_webhooks_total{kind="payment",outcome="stored"} 1`,
	} {
		resp, err := http.Get(m.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("%s: got %d, want 200 containing %q:\n%s", path, resp.StatusCode, want, b)
		}
	}
	resp, err := http.Get(m.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ottu_ingest_rejected_total{reason="not_json_object"} 1`,
		`ottu_ingest_signature_matches_total{key_index="1",scheme="A"} 1`, "ottu_ingest_spool_backlog 0", "ottu_ingest_publish_seconds_count"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestIngest_Embedded(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.NATSEmbedded = true
	cfg.NATSListen = "127.0.0.1:0"
	cfg.NATSStoreDir = t.TempDir()
	m := MustOpenMain(t, cfg)
	if status, body := post(t, m.URL(), http.MethodPost, payment(t, 1, testKey)); status != 200 || !strings.Contains(body, `"stored"`) {
		t.Fatalf("got %d %s", status, body)
	}
	if got := subjectCounts(t, stream(t, m.NATSURL()))["ottu.webhooks.payment"]; got != 1 {
		t.Fatalf("stored: got %d, want 1", got)
	}
}

// TestIngest_SpoolDirLocked: two ingest processes given one spool directory
// (say, two compose replicas on one volume) would overwrite each other's
// files: the second refuses to start, naming the variable to change.
func TestIngest_SpoolDirLocked(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	cfg := testConfig(t, ns.ClientURL())
	MustOpenMain(t, cfg)
	second := cfg
	second.Listen = "127.0.0.1:0"
	m := NewMain(second, natstest.Logger(t))
	err := m.Open()
	if !errors.Is(err, spool.ErrLocked) || !strings.Contains(err.Error(), "INGEST_SPOOL_DIR") {
		t.Fatalf("second ingest on one spool dir: got %v, want ErrLocked naming INGEST_SPOOL_DIR", err)
	}
}
