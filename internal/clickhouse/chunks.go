package clickhouse

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"

	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// How a pass reads parents (docs/performance.md): in chunks of neighbouring
// session_ids, so each query reads its own range of the tables' primary key
// (session_id comes first; the chunk's condition is a PREWHERE, so the other
// columns are read only where it holds) and Go folds one chunk's deliveries into parents
// before it reads the next. ClickHouse only filters and streams rows: an
// aggregation over the whole history would hold a state per parent (18.16
// runs out of memory at a million parents) and compare tuples through its
// slow generic path; Go folds a row in well under a microsecond. Memory is
// bounded by the chunk, not by the history.
const (
	// DefaultChunkRows is how many deliveries a chunk of a full pass holds,
	// about: the boundaries come from a sample.
	DefaultChunkRows = 100_000
	// defaultChunkSessions bounds a chunk of an incremental pass. One query
	// per table reads a whole chunk (each query costs something of its own,
	// whatever it reads), its parents sent beside the query as a table
	// (inList): a list in the query's text costs ClickHouse 18.16 about 10
	// µs an element to parse, a table 3.
	defaultChunkSessions = 20_000
)

// chunk is a set of parents read together: a range of session_ids [lo, hi)
// (an empty bound is open), or a list of them. With known set, months are
// the only months of received_at (toYYYYMM, the event tables' partitions)
// holding deliveries of the list's parents.
type chunk struct {
	lo, hi   string
	sessions []string
	months   []uint32
	known    bool
}

// set is the chunk's list of session_ids as a value for IN ?.
func (c chunk) set() clickhouse.GroupSet {
	set := make([]any, len(c.sessions))
	for i, s := range c.sessions {
		set[i] = s
	}
	return clickhouse.GroupSet{Value: set}
}

// cond returns the condition that keeps the chunk's parents, on column, and
// the context to run its query with.
func (s *Store) cond(ctx context.Context, c chunk, column string) (context.Context, string, []any, error) {
	if c.sessions != nil {
		ctx, cond, err := s.inList(ctx, column, c.sessions)
		return ctx, cond, nil, err
	}
	var conds []string
	var args []any
	if c.lo != "" {
		conds, args = append(conds, column+" >= ?"), append(args, c.lo)
	}
	if c.hi != "" {
		conds, args = append(conds, column+" < ?"), append(args, c.hi)
	}
	if len(conds) == 0 {
		return ctx, "1", nil, nil
	}
	return ctx, strings.Join(conds, " AND "), args, nil
}

// inList returns "expr IN <table>" with values sent beside the query as an
// external table (one String column, v), and the context that sends it.
// With a QueryLog, the values are logged under the table's name ("external
// table"), for the modern-ClickHouse check to replay the query.
func (s *Store) inList(ctx context.Context, expr string, values []string) (context.Context, string, error) {
	name := fmt.Sprintf("_recon_list_%d", s.lists.Add(1))
	t, err := ext.NewTable(name, ext.Column("v", "String"))
	if err != nil {
		return ctx, "", err
	}
	for _, v := range values {
		if err := t.Append(v); err != nil {
			return ctx, "", fmt.Errorf("external table: %w", err)
		}
	}
	if s.DB.QueryLog != nil {
		s.DB.QueryLog.Debug("external table", "name", name, "values", values)
	}
	return clickhouse.Context(ctx, clickhouse.WithExternalTable(t)), expr + " IN " + name, nil
}

// ranges splits every parent into ranges of session_id of about
// s.ChunkRows deliveries each, from a sample of the deliveries (every
// parent whose session_id hashes to 0 modulo the sampling rate, all its
// deliveries).
func (s *Store) ranges(ctx context.Context) ([]chunk, error) {
	size := cmp.Or(s.ChunkRows, DefaultChunkRows)
	rate := min(64, max(1, size/1024))
	stride := max(1, size/rate)
	rows, err := s.DB.conn.Query(ctx, fmt.Sprintf(`
SELECT session_id FROM (
	SELECT session_id FROM payment_events WHERE cityHash64(session_id) %% %[1]d = 0
	UNION ALL
	SELECT session_id FROM operation_events WHERE cityHash64(session_id) %% %[1]d = 0
) AS sampled
ORDER BY session_id`, rate))
	if err != nil {
		return nil, fmt.Errorf("sample session_ids: %w", err)
	}
	defer rows.Close()
	var bounds []string
	for n := 0; rows.Next(); n++ {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("scan sampled session_id: %w", err)
		}
		if n%stride == stride-1 && id != "" && (len(bounds) == 0 || id != bounds[len(bounds)-1]) {
			bounds = append(bounds, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sample session_ids: %w", err)
	}
	chunks := make([]chunk, 0, len(bounds)+1)
	lo := ""
	for _, b := range bounds {
		chunks = append(chunks, chunk{lo: lo, hi: b})
		lo = b
	}
	return append(chunks, chunk{lo: lo}), nil
}

// candidateChunks lists the parents sel selects, in order, in chunks.
func (s *Store) candidateChunks(ctx context.Context, sel ledger.Selection, indexed bool) ([]chunk, error) {
	union, args, err := candidates(sel, indexed)
	if err != nil {
		return nil, err
	}
	rows, err := s.DB.conn.Query(ctx, "SELECT candidate FROM ("+union+") AS candidates GROUP BY candidate ORDER BY candidate", args...)
	if err != nil {
		return nil, fmt.Errorf("query the parents to evaluate: %w", err)
	}
	defer rows.Close()
	var chunks []chunk
	cur, most := []string{}, cmp.Or(s.chunkSessions, defaultChunkSessions)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("scan a parent to evaluate: %w", err)
		}
		if len(cur) == most {
			chunks, cur = append(chunks, chunk{sessions: cur}), []string{}
		}
		cur = append(cur, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the parents to evaluate: %w", err)
	}
	if len(cur) > 0 {
		chunks = append(chunks, chunk{sessions: cur})
	}
	return chunks, nil
}
