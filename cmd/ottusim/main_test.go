package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/webhook"
)

// recorder is a webhook.Publisher that keeps what it was given.
type recorder struct {
	mu   sync.Mutex
	seen map[string]int
	rej  []string
}

func (r *recorder) Publish(_ context.Context, env events.Envelope) (events.PublishResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if env.Rejected() {
		r.rej = append(r.rej, env.Reject)
		return events.PublishResult{}, nil
	}
	r.seen[env.ID]++
	return events.PublishResult{Duplicate: r.seen[env.ID] > 1}, nil
}

// TestSend posts simulated traffic to ingest's real handler: every delivery
// verifies and decodes, duplicates are recognised, and every code is expected.
func TestSend(t *testing.T) {
	rec := &recorder{seen: map[string]int{}}
	h := &webhook.Handler{Keys: [][]byte{[]byte("sim-key")}, Publisher: rec, Logger: zerolog.Nop(),
		Metrics: webhook.NewMetrics(prometheus.NewRegistry())}
	srv := httptest.NewServer(h)
	defer srv.Close()
	dir := t.TempDir()
	c := SendConfig{URL: srv.URL, Key: []byte("sim-key"), Parents: 400, Anomalies: 0.25, Duplicates: 0.1,
		OutOfOrder: 0.2, SchemeB: 0.3, Lose: 0.05, Concurrency: 4, Seed: 7, Grace: 0, Rate: 0,
		OrdersOut: filepath.Join(dir, "orders.csv"), SummaryOut: filepath.Join(dir, "summary.json")}
	sum, err := Send(context.Background(), c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Statuses["200"] != sum.Deliveries || sum.Errors != 0 || len(rec.rej) != 0 {
		t.Fatalf("statuses %v, errors %d, rejected %v", sum.Statuses, sum.Errors, rec.rej)
	}
	if len(rec.seen) != sum.Distinct || sum.Deliveries <= sum.Distinct {
		t.Fatalf("distinct: stored %d, summary %d of %d deliveries", len(rec.seen), sum.Distinct, sum.Deliveries)
	}
	codes := map[string]bool{}
	for _, e := range sum.ExpectedFindings {
		codes[e.Code] = true
	}
	if len(codes) != len(ledger.Codes) {
		t.Fatalf("expected codes: got %d, want all %d", len(codes), len(ledger.Codes))
	}
	if len(sum.Lost) != 20 {
		t.Fatalf("lost %d parents' payment webhooks, want 5%% of 400", len(sum.Lost))
	}
	b, err := os.ReadFile(c.SummaryOut)
	if err != nil {
		t.Fatal(err)
	}
	var onDisk Summary
	if err := json.Unmarshal(b, &onDisk); err != nil || onDisk.Distinct != sum.Distinct {
		t.Fatalf("summary file: %v %+v", err, onDisk)
	}
	orders, _ := os.ReadFile(c.OrdersOut)
	if lines := strings.Count(string(orders), "\n"); lines < 300 {
		t.Fatalf("orders: %d lines", lines)
	}
}
