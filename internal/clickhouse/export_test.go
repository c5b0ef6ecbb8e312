package clickhouse

// SetChunkSessions makes an incremental pass read at most n parents at a time.
func SetChunkSessions(s *Store, n int) { s.chunkSessions = n }
