package clickhouse

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// sharedQuery finds the signed references (a payment attempt's or an
// operation's reference_number) delivered under more than one parent: one
// row per parent and reference, with the number of parents and the first 20
// of them. %[2]s picks the references to look at: in a full pass, an
// aggregation over 64-bit hashes first finds the few whose deliveries
// disagree on the parent (a collision only adds one the exact step drops);
// in an incremental pass, those of the selected parents. One signed body
// re-posted under thousands of session_ids must not cost thousands squared.
const sharedQuery = `
SELECT parent, reference_number, n, arraySlice(sessions, 1, 20)
FROM (
	SELECT reference_number, arraySort(groupUniqArray(session_id)) AS sessions, length(sessions) AS n
	FROM %[1]s
	WHERE reference_number != '' AND %[2]s
	GROUP BY reference_number
	HAVING n > 1
) AS shared
ARRAY JOIN sessions AS parent`

// sharedByHash picks, in a full pass, the references whose deliveries name
// more than one parent, by hash.
const sharedByHash = `cityHash64(reference_number) IN (
		SELECT h FROM (
			SELECT cityHash64(reference_number) AS h, min(cityHash64(session_id)) AS lo, max(cityHash64(session_id)) AS hi
			FROM %[1]s
			WHERE reference_number != ''
			GROUP BY h
		) AS hashed WHERE lo != hi)`

// sharedByIndex is sharedQuery over parent_keys: the parents of the
// references %[2]s picks, read from the index's range of each reference
// rather than from a scan of the event table.
const sharedByIndex = `
SELECT parent, key, n, arraySlice(sessions, 1, 20)
FROM (
	SELECT key, arraySort(groupUniqArray(session_id)) AS sessions, length(sessions) AS n
	FROM parent_keys
	WHERE key_kind = '%[1]s' AND key IN (%[2]s)
	GROUP BY key
	HAVING n > 1
) AS shared
ARRAY JOIN sessions AS parent`

// sharedRefs returns, per parent, the signed references it shares with
// another parent: every such reference in a full pass; in an incremental
// one, those that may have changed since the last (ledger.ReplayedWebhook is
// the one rule that reads them).
func (s *Store) sharedRefs(ctx context.Context, sel ledger.Selection, indexed bool) (map[string][]ledger.Shared, error) {
	out := map[string][]ledger.Shared{}
	for _, t := range []struct{ kind, table string }{{"payment", "payment_events"}, {"operation", "operation_events"}} {
		query, args := fmt.Sprintf(sharedQuery, t.table, fmt.Sprintf(sharedByHash, t.table)), []any(nil)
		if !sel.All {
			// A reference becomes shared only when a delivery of it is
			// stored; a parent that shared one before has an open
			// REPLAYED_WEBHOOK finding (it stays open while shared).
			refs := "SELECT reference_number FROM " + t.table + " WHERE stored_at >= ?"
			if indexed {
				refs = "SELECT reference_number FROM parent_changes WHERE kind = '" + t.kind + "' AND at >= ?"
			}
			refs += "\n\t\tUNION ALL SELECT reference_number FROM " + t.table +
				" WHERE session_id IN (SELECT session_id FROM findings WHERE " + isOpen + " AND code = ?)"
			args = []any{sel.StoredSince.UTC(), string(ledger.ReplayedWebhook)}
			if len(sel.Sessions) > 0 { // the parents the last pass could not read
				refs += "\n\t\tUNION ALL SELECT reference_number FROM " + t.table + " WHERE session_id IN ?"
				args = append(args, chunk{sessions: sel.Sessions}.set())
			}
			if indexed {
				query = fmt.Sprintf(sharedByIndex, t.kind+"_reference", refs)
			} else {
				query = fmt.Sprintf(sharedQuery, t.table, "reference_number IN ("+refs+")")
			}
		}
		rows, err := s.DB.conn.Query(ctx, query, args...)
		if err != nil {
			return nil, fmt.Errorf("query shared references: %w", err)
		}
		for rows.Next() {
			var parent string
			var n uint64
			sh := ledger.Shared{Kind: t.kind}
			if err := rows.Scan(&parent, &sh.ReferenceNumber, &n, &sh.Sessions); err != nil {
				rows.Close()
				return nil, fmt.Errorf("scan shared reference: %w", err)
			}
			sh.Parents = int(n)
			out[parent] = append(out[parent], sh)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read shared references: %w", err)
		}
	}
	for _, list := range out {
		slices.SortFunc(list, func(a, b ledger.Shared) int {
			return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ReferenceNumber, b.ReferenceNumber))
		})
	}
	return out, nil
}
