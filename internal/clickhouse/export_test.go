package clickhouse

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
