package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// months lists the months of received_at that hold deliveries of sessions
// (parent_months): a parent's deliveries cluster around its creation, so a
// pass reading parents that changed reads those months of the event tables,
// not every month that holds a session_id near theirs.
func (s *Store) months(ctx context.Context, sessions []string) ([]uint32, error) {
	ctx, in, err := s.inList(ctx, "session_id", sessions)
	if err != nil {
		return nil, err
	}
	rows, err := s.DB.conn.Query(ctx, "SELECT DISTINCT month FROM parent_months PREWHERE "+in)
	if err != nil {
		return nil, fmt.Errorf("query the months of parents: %w", err)
	}
	defer rows.Close()
	months := []uint32{}
	for rows.Next() {
		var m uint32
		if err := rows.Scan(&m); err != nil {
			return nil, fmt.Errorf("scan a month: %w", err)
		}
		months = append(months, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the months of parents: %w", err)
	}
	slices.Sort(months)
	return months, nil
}

// eventsCond is cond on the event tables: the chunk's parents, in its
// months when they are known (the partitions ClickHouse reads). skip: no
// month holds a delivery of them.
func (s *Store) eventsCond(ctx context.Context, c chunk) (_ context.Context, where string, args []any, skip bool, err error) {
	ctx, where, args, err = s.cond(ctx, c, "session_id")
	if err != nil || !c.known {
		return ctx, where, args, false, err
	}
	if len(c.months) == 0 {
		return ctx, "", nil, true, nil
	}
	list := make([]string, len(c.months))
	for i, m := range c.months {
		list[i] = strconv.FormatUint(uint64(m), 10)
	}
	return ctx, "toYYYYMM(received_at) IN (" + strings.Join(list, ", ") + ") AND " + where, args, false, nil
}
