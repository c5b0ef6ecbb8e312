package clickhouse

import (
	"context"
	"fmt"
	"strings"

	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// ChangeIndexVersion is the schema version whose indexes (parent_changes,
// parent_keys) an incremental pass reads once their backfill is complete.
const ChangeIndexVersion = 10

// indexed tells whether the change indexes are complete; once they are, they
// stay so.
func (s *Store) indexed(ctx context.Context) (bool, error) {
	if s.changeIndex.Load() {
		return true, nil
	}
	ok, err := s.DB.BackfillComplete(ctx, ChangeIndexVersion)
	if err != nil {
		return false, err
	}
	s.changeIndex.Store(ok)
	return ok, nil
}

// candidates returns a query of the parents (column candidate) an incremental
// selection keeps, and its args. With the change indexes (indexed), every
// part reads a range of an index or of a small table: what it costs follows
// what changed, not the history. Without them (a database whose backfill is
// not complete yet) it scans columns of the event tables.
func candidates(sel ledger.Selection, indexed bool) (string, []any, error) {
	since := sel.StoredSince.UTC()
	var parts []string
	var args []any
	add := func(q string, a ...any) { parts, args = append(parts, q), append(args, a...) }
	if indexed {
		add("SELECT session_id AS candidate FROM parent_changes WHERE kind = 'payment' AND at >= ?", since)
		add("SELECT session_id AS candidate FROM parent_changes WHERE kind = 'operation' AND at >= ?", since)
	} else {
		add("SELECT session_id AS candidate FROM payment_events WHERE stored_at >= ?", since)
		add("SELECT session_id AS candidate FROM operation_events WHERE stored_at >= ?", since)
	}
	for _, w := range sel.Windows {
		a, ok := anchorSQL[w.Anchor]
		if !ok {
			return "", nil, fmt.Errorf("no query for anchor %s", w.Anchor)
		}
		// A SELECT per condition, not one with ORs: each reads only its
		// own columns. The received_at windows read a month or two of the
		// event tables (their partitions); the others, a range of the index.
		if indexed && a.index != "" {
			add("SELECT session_id AS candidate FROM parent_changes WHERE kind = '"+a.index+"' AND at >= ? AND at <= ?", w.From.UTC(), w.To.UTC())
			continue
		}
		add("SELECT session_id AS candidate FROM "+a.table+" WHERE "+a.cond, w.From.UTC(), w.To.UTC())
	}
	add("SELECT "+unreadableKey+" AS candidate FROM unreadable_webhooks WHERE stored_at >= ?", since)
	if indexed {
		add("SELECT session_id AS candidate FROM parent_keys WHERE key_kind = 'order_no' AND key IN (SELECT order_no FROM merchant_orders WHERE inserted_at >= ?)", since)
	} else {
		add("SELECT session_id AS candidate FROM payment_events WHERE order_no IN (SELECT order_no FROM merchant_orders WHERE inserted_at >= ?)", since)
	}
	add("SELECT session_id AS candidate FROM findings WHERE " + isOpen)
	add("SELECT session_id AS candidate FROM ottu_inquiries WHERE asked_at >= ? AND session_id != ''", since)
	if len(sel.Sessions) > 0 {
		add("SELECT arrayJoin(?) AS candidate", sel.Sessions)
	}
	return strings.Join(parts, "\n\tUNION ALL "), args, nil
}
