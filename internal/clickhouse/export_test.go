package clickhouse

import "github.com/ottu-recon/ottu-recon/internal/events"

// SetChunkSessions makes an incremental pass read at most n parents at a time.
func SetChunkSessions(s *Store, n int) { s.chunkSessions = n }

// The SQL that must agree with a Go rule, for the tests that pin them.
const (
	LatestOrder      = latest
	UnreadableKeySQL = unreadableKey
)

var SeverityRankSQL = severityRank

// ChangeIndexUsed tells whether the store's last incremental selection read
// the change indexes.
func (s *Store) ChangeIndexUsed() bool { return s.changeIndex.Load() }

// AnchorIndexSQL is what parent_changes' views must say of each anchor the
// index holds: the kind, and the condition of its deliveries (from package
// events, as the store's own queries say it).
var AnchorIndexSQL = map[string]string{
	"authorized":    "if(state = " + sqlString(events.StateAuthorized) + ", 'authorized', '')",
	"refund_queued": "if(txn_state IN (" + sqlStrings(events.RefundQueuedSpellings) + "), 'refund_queued', '')",
}
