package ingest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
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

// TestIngest_BoundedBeforeAuthentication: bodies built to make parsing
// expensive (a 900,000-digit number, deep nesting, thousands of keys) with a
// bad signature are refused with 400 before any decimal is parsed. The calls
// are counted, not timed; the time is logged.
func TestIngest_BoundedBeforeAuthentication(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	m := MustOpenMain(t, testConfig(t, ns.ClientURL()))
	huge := []byte(`{"session_id":"s","state":"paid","amount":` + strings.Repeat("9", 900_000) + `,"signature":"` + strings.Repeat("0", 64) + `"}`)
	deep := []byte(`{"session_id":"s","state":"paid","x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`)
	var wide bytes.Buffer
	wide.WriteString(`{"session_id":"s","state":"paid"`)
	for i := range 1200 {
		fmt.Fprintf(&wide, `,"k%d":0`, i)
	}
	wide.WriteString(`}`)

	start := time.Now()
	var wg sync.WaitGroup
	codes := make([]int, 6)
	for i, body := range [][]byte{huge, huge, huge, huge, deep, wide.Bytes()} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = post(t, m.URL(), http.MethodPost, body)
		}()
	}
	wg.Wait()
	t.Logf("4 concurrent 900,000-digit bodies, one nested 40 deep, one of 1,200 keys: answered in %s", time.Since(start).Round(time.Millisecond))
	for i, code := range codes {
		if code != http.StatusBadRequest {
			t.Errorf("body %d: got %d, want 400", i, code)
		}
	}
	// Refused by the shape check, which runs before any parse: not one
	// decimal was parsed, nor the body decoded.
	if _, metrics := nettest.Get(t, m.URL()+"/metrics"); !strings.Contains(metrics, `ottu_ingest_rejected_total{reason="too_complex"} 6`) {
		t.Fatalf("not all six refused by the shape check:\n%s", grepLines(metrics, "ottu_ingest_rejected_total"))
	}
	// An authentic webhook still gets through, and is parsed.
	if code, body := post(t, m.URL(), http.MethodPost, payment(t, 1, testKey)); code != http.StatusOK {
		t.Fatalf("authentic webhook: %d %s", code, body)
	}
}

// TestIngest_AdminListen: with INGEST_ADMIN_LISTEN, the webhook port serves
// only the webhook; health and metrics (with error text) are on the admin
// port. Without it, /readyz on the public port never shows error text.
func TestIngest_AdminListen(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	cfg := testConfig(t, ns.ClientURL())
	cfg.AdminListen = "127.0.0.1:0"
	m := MustOpenMain(t, cfg)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := nettest.Get(t, m.URL()+path); code != http.StatusNotFound {
			t.Errorf("public %s: %d, want 404", path, code)
		}
		if code, _ := nettest.Get(t, m.AdminURL()+path); code != http.StatusOK {
			t.Errorf("admin %s: %d, want 200", path, code)
		}
	}

	// The public port of an ingest without an admin port, NATS away and the
	// spool full (an earlier run left more than its limit): 503, no detail.
	public := testConfig(t, "nats://127.0.0.1:1")
	left, err := spool.Open(public.SpoolDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := left.Append(events.Envelope{ID: "left", Kind: events.KindPayment, Body: bytes.Repeat([]byte("x"), 100)}); err != nil {
		t.Fatal(err)
	}
	left.Close()
	public.SpoolMaxBytes = 10
	pm := NewMain(public, natstest.Logger(t))
	if err := pm.Open(); err != nil {
		t.Fatal(err)
	}
	defer pm.Close(t.Context()) // the spool cannot drain with NATS away: its error is expected
	code, body := nettest.Get(t, pm.URL()+"/readyz")
	if code != http.StatusServiceUnavailable || strings.Contains(body, "error") || strings.Contains(body, "spool") || strings.Contains(body, "nats") {
		t.Fatalf("public readyz: %d %s; want 503 with no error text", code, body)
	}
}

// TestIngest_MaxConnections: INGEST_MAX_CONNECTIONS counts connections at
// work. Clients that asked once and went quiet on keep-alive connections
// (here eight, the limit) do not lock Ottu out: a signed webhook is answered
// 200 at once, an idle connection closed to make room. Connections busy with
// a request (a body still arriving) do hold their slot: past the limit, a
// new one waits until one of them is done.
func TestIngest_MaxConnections(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	cfg := testConfig(t, ns.ClientURL())
	cfg.MaxConnections = 8
	m := MustOpenMain(t, cfg)
	addr := strings.TrimPrefix(m.URL(), "http://")
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for range 8 { // idle keep-alive clients
		c := dial()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		buf := make([]byte, 12)
		if _, err := io.ReadFull(c, buf); err != nil || !strings.Contains(string(buf), "200") {
			t.Fatalf("idle client: %q %v", buf, err)
		}
	}
	ottu := &http.Client{Timeout: 5 * time.Second} // well below the 15 s Ottu waits
	start := time.Now()
	resp, err := ottu.Post(m.URL()+"/webhooks/ottu", "application/json", bytes.NewReader(payment(t, 1, testKey)))
	if err != nil {
		t.Fatalf("a signed webhook behind 8 idle clients: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a signed webhook behind 8 idle clients: %d", resp.StatusCode)
	}
	t.Logf("a signed webhook behind 8 idle keep-alive clients: answered 200 in %s", time.Since(start).Round(time.Microsecond))

	// Eight connections in the middle of a request: the ninth waits.
	var busy []net.Conn
	for range 8 {
		c := dial()
		fmt.Fprintf(c, "POST /webhooks/ottu HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
		busy = append(busy, c)
	}
	// Longer than a silent connection keeps its slot: these are at work.
	if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(m.URL() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a ninth connection was served while eight were busy")
	}
	busy[0].Close() // one is done
	resp, err = ottu.Get(m.URL() + "/healthz")
	if err != nil {
		t.Fatalf("not served after a busy connection closed: %v", err)
	}
	resp.Body.Close()
}

// TestIngest_RejectedBodyBudget: rejected bodies are kept up to the byte
// budget; beyond it only the reason is, and the drop is counted.
func TestIngest_RejectedBodyBudget(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	cfg := testConfig(t, ns.ClientURL())
	cfg.RejectedBytesPerMin = 100_000
	m := MustOpenMain(t, cfg)
	bad := bytes.Repeat([]byte("x"), 30_000)
	for i := range 10 {
		body := fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, i, bad) // distinct: each its own delivery
		if code, _ := post(t, m.URL(), http.MethodPost, body); code != http.StatusUnauthorized {
			t.Fatalf("got %d, want 401", code)
		}
	}
	s := stream(t, ns.ClientURL())
	kept, dropped := 0, 0
	for _, msg := range msgIDs(t, s) {
		if msg.Subject != "ottu.rejected" {
			continue
		}
		if len(msg.Data) > 0 {
			kept++
		} else if strings.Contains(msg.Header.Get(nats.HeaderReject), "not kept") {
			dropped++
		}
	}
	if kept != 3 || dropped != 7 {
		t.Fatalf("kept %d bodies and dropped %d, want 3 and 7", kept, dropped)
	}
	_, metrics := nettest.Get(t, m.URL()+"/metrics")
	if !strings.Contains(metrics, "ottu_ingest_rejected_bodies_dropped_total 7") {
		t.Fatal("drops not counted")
	}
}

var _ jetstream.Stream // the helpers above read the stream

// TestIngest_EmbeddedAuth: with NATS_EMBEDDED, NATS_USER and NATS_PASSWORD
// protect the embedded server: ingest stores through it, an anonymous client
// is refused, the daemon's credentials are accepted.
func TestIngest_EmbeddedAuth(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.NATSEmbedded, cfg.NATSListen, cfg.NATSStoreDir = true, "127.0.0.1:0", t.TempDir()
	cfg.NATSAuth = nats.Auth{User: "ottu", Password: "embedded-S3CRET"}
	m := MustOpenMain(t, cfg)
	if status, body := post(t, m.URL(), http.MethodPost, payment(t, 1, testKey)); status != 200 || !strings.Contains(body, `"stored"`) {
		t.Fatalf("got %d %s", status, body)
	}
	if nc, err := natsgo.Connect(m.NATSURL()); err == nil {
		nc.Close()
		t.Fatal("the embedded server accepted an anonymous client")
	}
	nc, err := natsgo.Connect(m.NATSURL(), natsgo.UserInfo("ottu", "embedded-S3CRET"))
	if err != nil {
		t.Fatalf("the daemon's credentials: %v", err)
	}
	nc.Close()
}

// TestIngest_NATSOverTLS: ingest reaches a NATS that speaks only TLS and
// requires a user and password, trusting the CA in NATS_TLS_CA_FILE; without
// the CA it cannot, and spools instead.
func TestIngest_NATSOverTLS(t *testing.T) {
	url, ca := natstest.MustOpenTLSServer(t, "ingest", "tls-S3CRET")
	cfg := testConfig(t, url)
	cfg.NATSAuth = nats.Auth{User: "ingest", Password: "tls-S3CRET", CAFile: ca}
	m := MustOpenMain(t, cfg)
	nettest.WaitFor(t, "a TLS connection to NATS", 10*time.Second, m.conn.Connected)
	if status, body := post(t, m.URL(), http.MethodPost, payment(t, 1, testKey)); status != 200 || !strings.Contains(body, `"stored"`) {
		t.Fatalf("over TLS: got %d %s, want stored", status, body)
	}
	untrusting := testConfig(t, url)
	untrusting.NATSAuth = nats.Auth{User: "ingest", Password: "tls-S3CRET"}
	u := NewMain(untrusting, natstest.Logger(t))
	if err := u.Open(); err != nil {
		t.Fatal(err)
	}
	defer u.Close(t.Context())
	if status, body := post(t, u.URL(), http.MethodPost, payment(t, 2, testKey)); status != 200 || !strings.Contains(body, `"spooled"`) {
		t.Fatalf("without the CA: got %d %s, want spooled (the server's certificate is not trusted)", status, body)
	}
}

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
