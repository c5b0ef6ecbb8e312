package clickhouse_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
)

// BenchmarkWriter_10k measures the sink: one Write of a 10,000-webhook batch
// (half payments, half operations, realistic ~1 KB bodies) into ClickHouse,
// including the existence check. It reports webhooks/s.
//
//	scripts/clickhouse.sh run go test -run='^$' -bench=Writer_10k -benchtime=5x ./internal/clickhouse
func BenchmarkWriter_10k(b *testing.B) {
	db := chtest.MustOpenDB(b)
	w := &clickhouse.Writer{DB: db}
	const size = 10000
	round := 0
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		round++
		batch := make([]events.StreamMessage, 0, size)
		for i := range size / 2 {
			s := fmt.Sprintf("b%d-%06d", round, i)
			p := paymentObj(s, "paid", "2026-05-14 10:00:00")
			p["gateway_response"] = map[string]any{"result": "SUCCESS", "order": map[string]any{"id": s, "amount": 25.5}, "pad": fmt.Sprintf("%0600d", i)}
			batch = append(batch, message(b, p), message(b, operationObj("op-"+s, s, "refunded", "2026-05-14 11:00:00")))
		}
		b.StartTimer()
		start := time.Now()
		res, err := w.Write(context.Background(), batch, nil)
		elapsed += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if res.Payments+res.Operations != size {
			b.Fatalf("stored %d, want %d", res.Payments+res.Operations, size)
		}
	}
	b.ReportMetric(float64(size*round)/elapsed.Seconds(), "webhooks/s")
}
