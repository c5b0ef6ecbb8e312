package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/nettest"
)

type okPublisher struct{ n atomic.Int32 }

func (p *okPublisher) Publish(context.Context, events.Envelope) (events.PublishResult, error) {
	p.n.Add(1)
	return events.PublishResult{}, nil
}

// TestDurable_TransientReadError: a read error the disk may recover from
// (EIO, EMFILE) is retried; the acknowledged webhook is never set aside.
func TestDurable_TransientReadError(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append(events.Envelope{ID: "a", Kind: events.KindPayment, Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	var fails atomic.Int32
	s.readFile = func(name string) ([]byte, error) {
		if fails.Add(1) <= 3 {
			return nil, &os.PathError{Op: "read", Path: name, Err: syscall.EIO}
		}
		return os.ReadFile(name)
	}
	pub := &okPublisher{}
	var retried atomic.Int32
	d := &Durable{Next: pub, Spool: s, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond,
		OnForwardError: func(_ events.Envelope, _ error, o Outcome) {
			if o == Retried {
				retried.Add(1)
			}
		}}
	if err := d.Open(); err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	nettest.WaitFor(t, "a forward", 10*time.Second, func() bool { return pub.n.Load() > 0 })
	if _, err := os.Stat(filepath.Join(dir, failedDir)); err == nil {
		entries, _ := os.ReadDir(filepath.Join(dir, failedDir))
		t.Fatalf("set aside after a transient error: %v", fmt.Sprint(entries))
	}
	if retried.Load() < 3 {
		t.Fatalf("retries reported: %d, want 3", retried.Load())
	}
}
