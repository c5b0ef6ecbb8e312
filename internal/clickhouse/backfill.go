package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ottu-recon/ottu-recon/schema"
)

// Backfills: a migration that adds a materialized view (an index ClickHouse
// keeps current on insert) also writes what the view would have written for
// the rows stored before it existed. That may take minutes on a large
// history, so it is a step of its own (docs/performance.md, "Moving an
// existing database"):
//
//   - `reconcile migrate` and `run-once` run it to the end; `serve` starts
//     storing first and runs it beside (the store reads an index only once
//     its backfill is complete, and finds changes the old way until then).
//   - It reads one partition (a month of received_at) of one event table per
//     statement and records each partition done in schema_backfills: a run
//     killed half-way resumes where it stopped.
//   - The views exist before it starts (Migrate created them), so a row
//     stored meanwhile is indexed by its view; an insert already under way
//     when a view was created is not, so once no such insert is left the
//     partitions with rows stored since an hour before the views are read
//     once more. A row indexed twice is harmless: the indexes hold distinct
//     rows, and readers ask for distinct values.
//   - The event tables are not touched: no row is moved, so none can be
//     lost or doubled.

// BackfillSettleMargin is how long before its views a migration's catch-up
// reads: an insert is never under way longer (the writer's inserts time out
// in well under a minute).
const BackfillSettleMargin = time.Hour

const createBackfills = `CREATE TABLE IF NOT EXISTS schema_backfills (
	version UInt32, source String, partition UInt32, rows UInt64, done_at DateTime
) ENGINE = MergeTree ORDER BY (version, source, partition)`

// BackfillProgress reports one partition done (Source empty: the
// migration's backfill is complete).
type BackfillProgress struct {
	Version   int
	Source    string
	Partition uint32
	Rows      uint64
	Took      time.Duration
}

// Backfill runs the backfill of every applied migration whose backfill is not
// complete, calling progress after each partition. It is idempotent and
// resumable; ctx bounds the whole run (a partition's statement is not
// bounded by QueryTimeout: it may read millions of rows).
func (db *DB) Backfill(ctx context.Context, progress func(BackfillProgress)) error {
	if progress == nil {
		progress = func(BackfillProgress) {}
	}
	conn, err := db.dial(db.Database)
	if err != nil {
		return err
	}
	defer conn.Close()
	qctx, cancel := db.timeout(ctx)
	err = conn.Exec(qctx, db.onCluster(createBackfills))
	cancel()
	if err != nil {
		return fmt.Errorf("create schema_backfills: %w", err)
	}
	migrations, err := schema.Migrations(db.Database)
	if err != nil {
		return err
	}
	for _, m := range migrations {
		if len(m.Backfill) == 0 {
			continue
		}
		applied, at, err := db.appliedAt(ctx, conn, m.Version)
		if err != nil {
			return err
		}
		if !applied {
			continue // its views do not exist yet: Migrate first
		}
		if err := db.backfill(ctx, conn, m, at, progress); err != nil {
			return fmt.Errorf("backfill %s: %w", m.Name, err)
		}
	}
	return nil
}

// BackfillComplete tells whether migration version's backfill is complete.
func (db *DB) BackfillComplete(ctx context.Context, version int) (bool, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	var n uint64
	err := db.conn.QueryRow(ctx, "SELECT count() FROM schema_backfills WHERE version = ? AND source = ''", uint32(version)).Scan(&n)
	if err != nil {
		if isUnknownTable(err) {
			return false, nil
		}
		return false, fmt.Errorf("read schema_backfills: %w", err)
	}
	return n > 0, nil
}

func (db *DB) appliedAt(ctx context.Context, conn driver.Conn, version int) (bool, time.Time, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	var n uint64
	var at time.Time
	if err := conn.QueryRow(ctx, "SELECT count(), min(applied_at) FROM schema_migrations WHERE version = ?", uint32(version)).Scan(&n, &at); err != nil {
		return false, time.Time{}, fmt.Errorf("read schema_migrations: %w", err)
	}
	return n > 0, at.UTC(), nil
}

func (db *DB) backfill(ctx context.Context, conn driver.Conn, m schema.Migration, viewsAt time.Time, progress func(BackfillProgress)) error {
	done := map[string]bool{}
	rows, err := conn.Query(ctx, "SELECT source, partition FROM schema_backfills WHERE version = ?", uint32(m.Version))
	if err != nil {
		return fmt.Errorf("read schema_backfills: %w", err)
	}
	for rows.Next() {
		var src string
		var p uint32
		if err := rows.Scan(&src, &p); err != nil {
			rows.Close()
			return fmt.Errorf("read schema_backfills: %w", err)
		}
		done[src+"/"+strconv.FormatUint(uint64(p), 10)] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read schema_backfills: %w", err)
	}
	if done["/0"] {
		return nil
	}
	bySource := map[string][]schema.Backfill{}
	var sources []string
	for _, b := range m.Backfill {
		if bySource[b.Source] == nil {
			sources = append(sources, b.Source)
		}
		bySource[b.Source] = append(bySource[b.Source], b)
	}
	// ClickHouse 18.16 moves a WHERE to PREWHERE by itself; with an ARRAY
	// JOIN, over a part written before a column with a DEFAULT existed
	// (stored_at, schema 3), it then returns no row at all, or fails: the
	// backfill keeps its WHERE a WHERE.
	bctx := ch.Context(ctx, ch.WithSettings(ch.Settings{"optimize_move_to_prewhere": 0}))
	run := func(src string, p uint32) error {
		for _, b := range bySource[src] {
			if err := conn.Exec(bctx, b.Partition(p)); err != nil {
				return fmt.Errorf("%s partition %d: %w", src, p, err)
			}
		}
		return nil
	}
	for _, src := range sources {
		parts, err := db.partitions(ctx, conn, src, "")
		if err != nil {
			return err
		}
		for _, p := range parts {
			if done[src+"/"+strconv.FormatUint(uint64(p), 10)] {
				continue
			}
			start := time.Now()
			n, err := db.count(ctx, conn, "SELECT count() FROM "+src+" WHERE toYYYYMM(received_at) = ?", p)
			if err != nil {
				return err
			}
			if err := run(src, p); err != nil {
				return err
			}
			if err := db.recordBackfill(ctx, conn, m.Version, src, p, n); err != nil {
				return err
			}
			progress(BackfillProgress{Version: m.Version, Source: src, Partition: p, Rows: n, Took: time.Since(start)})
		}
	}
	// The catch-up: inserts begun before the views existed, once none is
	// left under way.
	if err := db.waitInserts(ctx, conn, viewsAt, sources); err != nil {
		return err
	}
	for _, src := range sources {
		parts, err := db.partitions(ctx, conn, src, viewsAt.Add(-BackfillSettleMargin).Format(time.DateTime))
		if err != nil {
			return err
		}
		for _, p := range parts {
			if err := run(src, p); err != nil {
				return err
			}
		}
	}
	if err := db.recordBackfill(ctx, conn, m.Version, "", 0, 0); err != nil {
		return err
	}
	progress(BackfillProgress{Version: m.Version})
	return nil
}

// partitions lists the months of received_at that src holds: every one, or,
// with storedSince, those holding a row stored since then.
func (db *DB) partitions(ctx context.Context, conn driver.Conn, src, storedSince string) ([]uint32, error) {
	q, args := "SELECT DISTINCT toUInt32(partition) FROM system.parts WHERE database = ? AND table = ? AND active", []any{db.Database, src}
	if storedSince != "" {
		q, args = "SELECT DISTINCT toYYYYMM(received_at) FROM "+src+" WHERE stored_at >= toDateTime(?, 'UTC')", []any{storedSince}
	}
	qctx, cancel := db.timeout(ctx)
	defer cancel()
	rows, err := conn.Query(qctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list partitions of %s: %w", src, err)
	}
	defer rows.Close()
	var out []uint32
	for rows.Next() {
		var p uint32
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("list partitions of %s: %w", src, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list partitions of %s: %w", src, err)
	}
	slices.Sort(out)
	return out, nil
}

func (db *DB) count(ctx context.Context, conn driver.Conn, q string, args ...any) (uint64, error) {
	var n uint64
	if err := conn.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count: %w", err)
	}
	return n, nil
}

func (db *DB) recordBackfill(ctx context.Context, conn driver.Conn, version int, src string, p uint32, n uint64) error {
	qctx, cancel := db.timeout(ctx)
	defer cancel()
	batch, err := conn.PrepareBatch(qctx, "INSERT INTO schema_backfills (version, source, partition, rows, done_at)")
	if err == nil {
		err = batch.Append(uint32(version), src, p, n, time.Now().UTC())
	}
	if err == nil {
		err = batch.Send()
	}
	if err != nil {
		return fmt.Errorf("record backfill: %w", err)
	}
	return nil
}

// waitInserts waits until no node runs an insert into one of tables that
// began before t.
func (db *DB) waitInserts(ctx context.Context, conn driver.Conn, t time.Time, tables []string) error {
	quoted := make([]string, len(tables))
	for i, table := range tables {
		quoted[i] = regexp.QuoteMeta(table)
	}
	pattern := "(?i)^\\s*INSERT\\s+INTO\\s+(\\S+\\.)?`?(" + strings.Join(quoted, "|") + ")\\b"
	const q = `SELECT count() FROM system.processes WHERE match(query, ?) AND toUInt32(now()) - toUInt32(elapsed) <= ?`
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		var n uint64
		if db.Cluster == "" {
			qctx, cancel := db.timeout(ctx)
			err := conn.QueryRow(qctx, q, pattern, uint32(t.Unix())).Scan(&n)
			cancel()
			if err != nil {
				return fmt.Errorf("look for inserts under way: %w", err)
			}
		} else {
			// Each node knows only its own queries; a node that does not
			// answer has no insert under way that can still finish.
			for _, addr := range db.Addrs {
				node := *db
				node.Addrs = []string{addr}
				c, err := node.dial("default")
				if err != nil {
					continue
				}
				var k uint64
				qctx, cancel := db.timeout(ctx)
				if c.QueryRow(qctx, q, pattern, uint32(t.Unix())).Scan(&k) == nil {
					n += k
				}
				cancel()
				c.Close()
			}
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// isUnknownTable tells whether err is ClickHouse's "table doesn't exist".
func isUnknownTable(err error) bool {
	var ex *ch.Exception
	return errors.As(err, &ex) && ex.Code == 60
}
