package clickhouse_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// BenchmarkPass measures a full reconciliation pass over N parents with three
// operations each (an authorization, two partial captures and a refund of
// part of them; one parent in 50 has an anomaly). N comes from
// OTTU_BENCH_PARENTS (comma-separated; default 10000):
//
//	OTTU_BENCH_PARENTS=10000,100000 scripts/clickhouse.sh run \
//	  go test -run='^$' -bench=Pass -benchtime=3x -timeout=30m ./internal/clickhouse
func BenchmarkPass(b *testing.B) {
	sizes := os.Getenv("OTTU_BENCH_PARENTS")
	if sizes == "" {
		sizes = "10000"
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			b.Fatalf("OTTU_BENCH_PARENTS: %v", err)
		}
		b.Run(fmt.Sprintf("parents=%d", n), func(b *testing.B) { benchmarkPass(b, n) })
	}
}

func benchmarkPass(b *testing.B, n int) {
	db := chtest.MustOpenDB(b)
	loadParents(b, db, n)
	r := &ledger.Reconciler{Store: fullPasses{&clickhouse.Store{DB: db}},
		Config: ledger.Config{Grace: 10 * time.Minute, StaleAuthorization: 168 * time.Hour, StuckRefund: 48 * time.Hour, Live: true}}
	var rep ledger.Run
	var total time.Duration
	passes := 0
	for b.Loop() {
		start := time.Now()
		var err error
		if rep, err = r.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		passes++
	}
	if rep.ParentsEvaluated != n || rep.Open != n/50 {
		b.Fatalf("pass evaluated %d parents with %d open findings, want %d and %d", rep.ParentsEvaluated, rep.Open, n, n/50)
	}
	b.ReportMetric(float64(n)*float64(passes)/total.Seconds(), "parents/s")
}

// loadParents writes n parents, 3n operations, straight through the Writer.
func loadParents(b *testing.B, db *clickhouse.DB, n int) {
	b.Helper()
	w := &clickhouse.Writer{DB: db}
	at := time.Now().UTC().Add(-2 * time.Hour)
	var seq uint64
	msg := func(wh *events.Webhook, id string) events.StreamMessage {
		seq++
		return events.StreamMessage{Envelope: events.Envelope{ID: id, Kind: wh.Kind, ReceivedAt: at, Body: []byte(`{}`)},
			StreamSeq: seq, Webhook: wh}
	}
	const chunk = 20000
	batch := make([]events.StreamMessage, 0, chunk+4)
	for i := range n {
		s := fmt.Sprintf("%040d", i)
		amount := amt("40.000")
		batch = append(batch, msg(&events.Webhook{Kind: events.KindPayment, Payment: &events.Payment{
			SessionID: s, OrderNo: "o" + s, State: "authorized", Result: "success", Amount: amount, CurrencyCode: "KWD",
			GatewayAccount: "credit-card", GatewayName: "mpgs", Timestamp: at}}, "p"+s))
		captureB := "30.000"
		if i%50 == 0 {
			captureB = "35.000" // over-capture: 10 + 35 > 40
		}
		for j, o := range []struct{ kind, state, amount string }{
			{"capture", "paid", "10.000"}, {"capture", "paid", captureB}, {"refund", "refunded", "5.000"},
		} {
			ref := fmt.Sprintf("r%s-%d", s, j)
			batch = append(batch, msg(&events.Webhook{Kind: events.KindOperation, Operation: &events.Operation{
				ReferenceNumber: ref, SessionID: s, Operation: o.kind, Source: "input", Result: "success", Success: true,
				Amount: amt(o.amount), Timestamp: at,
				Txn: events.Txn{SessionID: "c" + ref, State: o.state, Amount: amt(o.amount), CurrencyCode: "KWD"}}}, ref))
		}
		if len(batch) >= chunk || i == n-1 {
			if _, err := w.Write(context.Background(), batch, nil); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// fullPasses makes every pass a full one: no last run.
type fullPasses struct{ *clickhouse.Store }

func (fullPasses) LastPass(context.Context) (ledger.LastPass, bool, error) {
	return ledger.LastPass{}, false, nil
}
