package clickhouse_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

func storedPayment(session, state string, ts, received time.Time) events.StreamMessage {
	seq++
	return events.StreamMessage{
		Envelope:  events.Envelope{ID: "p-" + session + state, Kind: events.KindPayment, ReceivedAt: received, Body: []byte(`{}`)},
		StreamSeq: seq,
		Webhook: &events.Webhook{Kind: events.KindPayment, Payment: &events.Payment{SessionID: session, State: state,
			Amount: events.NewAmount("10"), CurrencyCode: "KWD", Timestamp: ts}},
	}
}

func storedOperation(ref, session, state string, ts, received time.Time) events.StreamMessage {
	seq++
	return events.StreamMessage{
		Envelope:  events.Envelope{ID: "o-" + ref + state, Kind: events.KindOperation, ReceivedAt: received, Body: []byte(`{}`)},
		StreamSeq: seq,
		Webhook: &events.Webhook{Kind: events.KindOperation, Operation: &events.Operation{ReferenceNumber: ref, SessionID: session,
			Operation: "refund", Amount: events.NewAmount("1"), Timestamp: ts,
			Txn: events.Txn{SessionID: "c-" + ref, State: state, Amount: events.NewAmount("1"), CurrencyCode: "KWD"}}},
	}
}

func selected(t *testing.T, s *clickhouse.Store, sel ledger.Selection) []string {
	t.Helper()
	var ids []string
	if err := s.Parents(context.Background(), sel, func(p *ledger.Parent) error {
		ids = append(ids, p.SessionID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(ids)
	return ids
}

// TestStore_Selection: an incremental pass evaluates the parents that changed,
// those with an open finding, and those for which a time-based rule started to
// apply since the last pass, and no other.
func TestStore_Selection(t *testing.T) {
	db := chtest.MustOpenDB(t)
	w := &clickhouse.Writer{DB: db}
	store := &clickhouse.Store{DB: db}
	now := time.Now().UTC().Truncate(time.Second)
	cfg := ledger.Config{Grace: 10 * time.Minute, StaleAuthorization: 168 * time.Hour, StuckRefund: 48 * time.Hour}
	since := now.Add(-5 * time.Minute)
	old := now.Add(-30 * 24 * time.Hour)
	staleAt := now.Add(-cfg.StaleAuthorization - time.Minute)
	stuckAt := now.Add(-cfg.StuckRefund - time.Minute)
	mustWrite(t, w,
		storedPayment("changed", "paid", old, since.Add(time.Minute)),
		storedPayment("old", "paid", old, old),
		storedPayment("stale-crossing", "authorized", staleAt, staleAt),
		storedPayment("stale-not-yet", "authorized", now.Add(-cfg.StaleAuthorization+time.Hour), now.Add(-cfg.StaleAuthorization+time.Hour)),
		storedPayment("stale-before", "authorized", since.Add(-cfg.StaleAuthorization-time.Hour), since.Add(-cfg.StaleAuthorization-time.Hour)),
		storedPayment("grace-crossing", "paid", old, now.Add(-cfg.Grace-30*time.Second)),
		storedPayment("stuck-crossing", "paid", old, old),
		storedOperation("q1", "stuck-crossing", "refund_queued", stuckAt, stuckAt),
		storedOperation("late-op", "orphan-crossing", "refunded", old, now.Add(-cfg.Grace-time.Minute)),
		storedPayment("open-finding", "paid", old, old),
	)
	if err := store.SaveFindings(context.Background(), []ledger.Record{{
		Finding: ledger.Finding{SessionID: "open-finding", Code: ledger.SandboxInLive, Severity: ledger.Critical, Detail: "x"},
		Status:  ledger.StatusOpen, FirstSeen: old, LastSeen: old, RunID: "r"}}); err != nil {
		t.Fatal(err)
	}

	got := selected(t, store, ledger.Selection{ChangedSince: since, Now: now, Config: cfg})
	want := []string{"changed", "grace-crossing", "open-finding", "orphan-crossing", "stale-crossing", "stuck-crossing"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("incremental: got %v, want %v", got, want)
	}
	if got := selected(t, store, ledger.Selection{All: true, Now: now, Config: cfg}); len(got) != 9 {
		t.Fatalf("full: got %d parents %v, want 9", len(got), got)
	}
}
