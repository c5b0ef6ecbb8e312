package nats_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/nats"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
	"github.com/ottu-recon/ottu-recon/internal/nettest"
)

// TestConsumer_BatchBytes: a backlog of large deliveries (rejected bodies of
// 600 KB) is handed to the store in batches that hold at most MaxBytes,
// whatever BatchSize allows, and every message arrives.
func TestConsumer_BatchBytes(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	conn := &nats.Conn{URL: ns.ClientURL(), Logger: natstest.Logger(t)}
	if err := conn.Open(); err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	pub := &nats.Publisher{Conn: conn, Stream: nats.DefaultStreamConfig()}
	body := []byte(strings.Repeat("x", 600_000))
	const n = 20
	for i := range n {
		env := events.Envelope{ID: fmt.Sprintf("r%d", i), ReceivedAt: time.Now(), Reject: "bad_signature", Body: body}
		if _, err := pub.Publish(context.Background(), env); err != nil {
			t.Fatal(err)
		}
	}
	const maxBytes = 2 << 20
	var mu sync.Mutex
	var sizes []int
	total := 0
	c := &nats.Consumer{Conn: conn, Stream: nats.DefaultStreamConfig(), BatchSize: 1000, MaxBytes: maxBytes,
		MaxWait: 100 * time.Millisecond,
		Handle: func(_ context.Context, msgs []events.StreamMessage, _ []bool) ([]bool, error) {
			b := 0
			for _, m := range msgs {
				b += len(m.Body)
			}
			mu.Lock()
			sizes, total = append(sizes, b), total+len(msgs)
			mu.Unlock()
			return nil, nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.Open(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	nettest.WaitFor(t, fmt.Sprintf("%d deliveries", n), 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return total == n
	})
	cancel()
	<-done
	for _, s := range sizes {
		if s > maxBytes {
			t.Fatalf("a batch of %d bytes, over %d (batches %v)", s, maxBytes, sizes)
		}
	}
	if len(sizes) < n*600_000/maxBytes {
		t.Fatalf("batches %v: fewer than the bytes allow", sizes)
	}
}
