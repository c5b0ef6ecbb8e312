package reconcile

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ingest"
	"github.com/ottu-recon/ottu-recon/internal/nats"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
	"github.com/ottu-recon/ottu-recon/internal/nettest"
)

func testConfig(tb testing.TB, natsURL string, db *clickhouse.DB) Config {
	cfg := DefaultConfig()
	cfg.NATSURL = natsURL
	cfg.ClickHouseAddrs = db.Addrs
	cfg.ClickHouseDatabase = db.Database
	cfg.Listen = "127.0.0.1:0"
	cfg.BatchSize = 100
	cfg.BatchWait = 50 * time.Millisecond
	cfg.Schedule = "@every 1h"
	return cfg
}

// mustRig starts what most tests start from: a NATS server and a database of
// their own, a reconcile daemon on them (its configuration changed by change,
// when set) and a publisher into its stream.
func mustRig(tb testing.TB, change func(*Config)) (*nats.Server, *clickhouse.DB, *Main, *nats.Publisher) {
	tb.Helper()
	ns := natstest.MustOpenServer(tb, "", "")
	db := chtest.MustOpenDB(tb)
	cfg := testConfig(tb, ns.ClientURL(), db)
	if change != nil {
		change(&cfg)
	}
	return ns, db, MustOpenMain(tb, cfg), publisher(tb, ns.ClientURL())
}

// mustIngest starts an ingest daemon publishing to natsURL and verifying
// with key (its configuration changed by change, when set), closed when the
// test ends.
func mustIngest(tb testing.TB, natsURL string, key []byte, change func(*ingest.Config)) *ingest.Main {
	tb.Helper()
	cfg := ingest.DefaultConfig()
	cfg.Listen, cfg.HMACKeys, cfg.NATSURL, cfg.SpoolDir = "127.0.0.1:0", [][]byte{key}, natsURL, tb.TempDir()
	if change != nil {
		change(&cfg)
	}
	m := ingest.NewMain(cfg, natstest.Logger(tb))
	if err := m.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func MustOpenMain(tb testing.TB, cfg Config) *Main {
	tb.Helper()
	m := openWaiting(tb, cfg)
	waitReady(tb, m)
	return m
}

// waitReady waits until m is connected to ClickHouse and the stream.
func waitReady(tb testing.TB, m *Main) {
	tb.Helper()
	select {
	case <-m.readyCh:
	case <-time.After(30 * time.Second):
		tb.Fatal("reconcile did not connect to ClickHouse and the stream within 30s")
	}
}

// openWaiting starts reconcile without waiting for its dependencies, and
// closes it when the test ends.
func openWaiting(tb testing.TB, cfg Config) *Main {
	tb.Helper()
	m := NewMain(cfg, natstest.Logger(tb))
	m.RetryMin = 50 * time.Millisecond
	if err := m.Open(context.Background()); err != nil {
		tb.Fatalf("Open: %v (with a dependency down, it should start and wait)", err)
	}
	nettest.CloseAtEnd(tb, 20*time.Second, m.Close)
	return m
}

// alertReceiver starts an alert sink that checks signatures with key.
func alertReceiver(tb testing.TB, key string) (*alertSink, string) {
	tb.Helper()
	sink := &alertSink{key: []byte(key)}
	srv := httptest.NewServer(sink)
	tb.Cleanup(srv.Close)
	return sink, srv.URL
}

// publisher publishes envelopes into the test stream as ingest would.
func publisher(tb testing.TB, url string) *nats.Publisher {
	tb.Helper()
	c := &nats.Conn{URL: url, Logger: zerolog.Nop()}
	if err := c.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close(context.Background()) })
	return &nats.Publisher{Conn: c, Stream: nats.DefaultStreamConfig()}
}

func publish(tb testing.TB, p *nats.Publisher, body string) events.Envelope {
	tb.Helper()
	rd, err := events.Read([]byte(body), events.Verification{Trusted: true})
	if err != nil || rd.Webhook == nil {
		tb.Fatalf("read %s: %v %+v", body, err, rd.Unreadable)
	}
	env := events.Envelope{ID: rd.DeliveryID(), Kind: rd.Kind, ReceivedAt: time.Now().UTC(),
		Scheme: events.SchemeA, Body: []byte(body)}
	if _, err := p.Publish(context.Background(), env); err != nil {
		tb.Fatal(err)
	}
	return env
}

func paymentBody(i int, state string) string {
	return fmt.Sprintf(`{"session_id":"s%05d","state":%q,"amount":"10.000","currency_code":"KWD","order_no":"o%d",`+
		`"reference_number":"r%d","result":"success","timestamp_utc":"2026-05-14 10:00:00"}`, i, state, i, i)
}

// waitFor is nettest.WaitFor.
var waitFor = nettest.WaitFor

func consumerInfo(tb testing.TB, url, durable string) *jetstream.ConsumerInfo {
	tb.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	c, err := js.Consumer(context.Background(), nats.DefaultStreamConfig().Name, durable)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return info
}

func TestServe_StoresEveryWebhookOnce(t *testing.T) {
	ns, db, m, p := mustRig(t, nil)

	const n = 300
	for i := range n {
		publish(t, p, paymentBody(i, "paid"))
	}
	// A late pending for an already-paid parent, and an exact re-send.
	publish(t, p, paymentBody(3, "pending"))
	publish(t, p, paymentBody(5, "paid"))
	waitFor(t, "all webhooks stored", 30*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == n+1
	})
	waitFor(t, "all acked", 10*time.Second, func() bool {
		info := consumerInfo(t, ns.ClientURL(), m.Config.Consumer)
		return info.NumAckPending == 0 && info.NumPending == 0
	})
	if got := chtest.Count(t, db, "SELECT count() FROM payments WHERE state = 'paid'"); got != n {
		t.Fatalf("paid payments: got %d, want %d", got, n)
	}
	if got := chtest.Count(t, db, "SELECT count() FROM webhooks_raw"); got != n+1 {
		t.Fatalf("raw rows: got %d, want %d", got, n+1)
	}
}

func TestServe_PoisonTerminatedAndKept(t *testing.T) {
	ns, db, m, p := mustRig(t, nil)

	// A message on a verified subject with no envelope headers (kept as
	// rejected), and a verified one whose body is not a webhook (kept raw as
	// unreadable).
	if _, err := p.Conn.JetStream().Publish(context.Background(), "ottu.webhooks.payment", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	bad := events.Envelope{ID: "bad-body", Kind: events.KindPayment, ReceivedAt: time.Now().UTC(), Body: []byte(`{"hello":1}`)}
	if _, err := p.Publish(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	good := publish(t, p, paymentBody(1, "paid"))
	waitFor(t, "poison kept", 20*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM rejected_webhooks WHERE reason LIKE 'unreadable stream message:%'") == 1 &&
			chtest.Count(t, db, "SELECT count() FROM unreadable_webhooks WHERE delivery_id = 'bad-body'") == 1
	})
	waitFor(t, "everything settled", 10*time.Second, func() bool {
		info := consumerInfo(t, ns.ClientURL(), m.Config.Consumer)
		return info.NumAckPending == 0 && info.NumPending == 0 && info.NumRedelivered == 0
	})
	if got := chtest.Count(t, db, "SELECT count() FROM webhooks_raw WHERE delivery_id = ?", good.ID); got != 1 {
		t.Fatal("the good webhook in the same batch was not stored")
	}
}

// proxy is a loopback TCP proxy to ClickHouse that a test can take down and
// bring back on the same address.
type proxy struct {
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func startProxy(tb testing.TB, target string) *proxy {
	p := &proxy{target: target, addr: "127.0.0.1:0"}
	p.up(tb)
	p.addr = p.ln.Addr().String()
	tb.Cleanup(p.down)
	return p
}

func (p *proxy) up(tb testing.TB) {
	tb.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		tb.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
}

func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestServe_ClickHouseOutage: while ClickHouse is unreachable nothing is
// acked; once it is back every message is stored, once.
func TestServe_ClickHouseOutage(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
	px := startProxy(t, db.Addrs[0])
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.ClickHouseAddrs = []string{px.addr}
	MustOpenMain(t, cfg)
	p := publisher(t, ns.ClientURL())

	for i := range 10 {
		publish(t, p, paymentBody(i, "paid"))
	}
	waitFor(t, "first webhooks stored", 20*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 10
	})
	px.down()
	for i := 10; i < 60; i++ {
		publish(t, p, paymentBody(i, "paid"))
	}
	// The consumer has the batch in hand and keeps retrying it: nothing acked.
	waitFor(t, "the consumer to hold the batch", 10*time.Second, func() bool {
		return consumerInfo(t, ns.ClientURL(), cfg.Consumer).NumAckPending > 0
	})
	if got := chtest.Count(t, db, "SELECT count() FROM webhooks_raw"); got != 10 {
		t.Fatalf("stored during the outage: got %d, want 10", got)
	}
	if info := consumerInfo(t, ns.ClientURL(), cfg.Consumer); info.AckFloor.Stream > 10 {
		t.Fatalf("acked past the outage: ack floor %d", info.AckFloor.Stream)
	}
	px.up(t)
	waitFor(t, "everything stored after the outage", 60*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == 60
	})
	waitFor(t, "everything acked", 20*time.Second, func() bool {
		info := consumerInfo(t, ns.ClientURL(), cfg.Consumer)
		return info.NumAckPending == 0 && info.NumPending == 0
	})
	if got := chtest.Count(t, db, "SELECT count() FROM payment_events"); got < 60 {
		t.Fatalf("payment rows: got %d, want at least 60", got)
	}
	if got := chtest.Count(t, db, "SELECT count() FROM payments"); got != 60 {
		t.Fatalf("payments: got %d, want 60", got)
	}
}

// TestServe_ShutdownFlushesOpenBatch: the batch in hand when reconcile is
// told to stop is still stored and acked.
func TestServe_ShutdownFlushesOpenBatch(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.BatchWait = 2 * time.Second // the batch stays open while we stop
	m := NewMain(cfg, natstest.Logger(t))
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitReady(t, m)
	p := publisher(t, ns.ClientURL())
	for i := range 5 {
		publish(t, p, paymentBody(i, "paid"))
	}
	waitFor(t, "the consumer to hold the batch", 10*time.Second, func() bool {
		return consumerInfo(t, ns.ClientURL(), cfg.Consumer).NumAckPending == 5
	})
	if got := chtest.Count(t, db, "SELECT count() FROM webhooks_raw"); got != 0 {
		t.Fatalf("stored before the batch closed: %d", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := chtest.Count(t, db, "SELECT count() FROM webhooks_raw"); got != 5 {
		t.Fatalf("stored at shutdown: got %d, want 5", got)
	}
	if info := consumerInfo(t, ns.ClientURL(), cfg.Consumer); info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("after shutdown: %d ack pending, %d pending", info.NumAckPending, info.NumPending)
	}
}
