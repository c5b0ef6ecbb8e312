package nats_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/nats"
)

// BenchmarkPublish measures what ingest waits for per webhook: a publish to
// the embedded server, file storage, acknowledged, from 64 concurrent
// publishers (as many requests in flight). With SyncAlways, every message is
// fsync'd before its acknowledgement. Run:
//
//	go test -run '^$' -bench Publish -benchtime 5s ./internal/nats
func BenchmarkPublish(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("SyncAlways=%v", sync), func(b *testing.B) {
			s := &nats.Server{Listen: "127.0.0.1:0", StoreDir: b.TempDir(), SyncAlways: sync, Logger: zerolog.Nop()}
			if err := s.Open(); err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			c := &nats.Conn{URL: s.ClientURL(), Logger: zerolog.Nop()}
			if err := c.Open(); err != nil {
				b.Fatal(err)
			}
			defer c.Close(context.Background())
			p := &nats.Publisher{Conn: c, Stream: nats.DefaultStreamConfig()}
			body := make([]byte, 1500) // a typical webhook
			var n atomic.Int64
			b.SetParallelism(32) // 64 publishers on 2 cores
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					env := events.Envelope{ID: fmt.Sprintf("d-%d", i), Kind: events.KindPayment, ReceivedAt: time.Now(), Body: body}
					if _, err := p.Publish(context.Background(), env); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "webhooks/s")
		})
	}
}
