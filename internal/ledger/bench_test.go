package ledger_test

import (
	"testing"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// BenchmarkEvaluate measures the rules on one parent: a clean one (an
// authorization, two captures and a refund that add up) and one that trips
// several rules (details are built only when a rule fires).
//
//	go test -run=^$ -bench=Evaluate -benchmem ./internal/ledger
func BenchmarkEvaluate(b *testing.B) {
	for _, c := range []struct {
		name  string
		p     *ledger.Parent
		fired int
	}{
		{"clean", with(parent(events.StateAuthorized, "40"),
			op("r1", "capture", "paid", "10"), op("r2", "capture", "paid", "30"), op("r3", "refund", "refunded", "5")), 0},
		{"anomalous", with(parent(events.StateAuthorized, "40"),
			op("r1", "capture", "paid", "10"), op("r2", "capture", "paid", "35"), op("r3", "refund", "refunded", "50"),
			op("r4", "void", "voided", "40")), 3},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			if got := len(ledger.Evaluate(c.p, cfg, now)); got < c.fired {
				b.Fatalf("%d findings, want at least %d", got, c.fired)
			}
			for b.Loop() {
				ledger.Evaluate(c.p, cfg, now)
			}
		})
	}
}
