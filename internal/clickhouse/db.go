// Package clickhouse wraps clickhouse-go/v2 (native protocol) for ottu-recon:
// the connection and schema migrations (DB), the consumer's batch writer
// (Writer), and the reconciler's store (Store).
//
// SQL here runs on ClickHouse 18.16 and 24+: INSERTs name their columns, no
// JSONExtract (bodies are decoded in Go), no DateTime64, no groupArray over a
// Decimal (it crashes 18.16: decimals are turned into strings first and parsed
// exactly in Go).
package clickhouse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ottu-recon/ottu-recon/schema"
)

// DB is a ClickHouse connection to one database. Set the fields, then Open.
type DB struct {
	Addrs    []string
	Database string
	Username string
	Password string
	// Cluster, when set (CLICKHOUSE_CLUSTER), makes Migrate create the
	// database and every table ON CLUSTER, tables as Replicated*MergeTree.
	Cluster string
	// InsertQuorum, when above 1, makes every insert of deliveries (Writer)
	// return only once that many replicas hold it (insert_quorum): an
	// acknowledged webhook then survives the loss of the replica that took
	// it. While fewer replicas are up, storing waits (JetStream keeps the
	// webhooks); a pass's own writes do not wait for a quorum.
	InsertQuorum int
	// TLS connects over TLS (CLICKHOUSE_TLS), trusting TLSCAFile when set,
	// else the system's roots.
	TLS       bool
	TLSCAFile string
	// QueryTimeout bounds a call whose ctx has no deadline; default 60s.
	QueryTimeout time.Duration
	// QueryLog, if set, is clickhouse-go's logger: at debug level it gets
	// every statement sent, with its arguments bound ("sending query"). The
	// modern-ClickHouse check replays them.
	QueryLog *slog.Logger

	conn driver.Conn
}

// Open connects to the database; it does not create it (Migrate does).
func (db *DB) Open(ctx context.Context) error {
	if len(db.Addrs) == 0 || db.Database == "" {
		return errors.New("clickhouse: Addrs and Database are required")
	}
	if db.QueryTimeout <= 0 {
		db.QueryTimeout = 60 * time.Second
	}
	conn, err := db.dial(db.Database)
	if err != nil {
		return err
	}
	db.conn = conn
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	if err := conn.Ping(ctx); err != nil {
		return fmt.Errorf("ping clickhouse %s: %w", strings.Join(db.Addrs, ","), err)
	}
	return nil
}

func (db *DB) dial(database string) (driver.Conn, error) {
	var tlsConfig *tls.Config
	if db.TLS {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if db.TLSCAFile != "" {
			pem, err := os.ReadFile(db.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("read CLICKHOUSE_TLS_CA_FILE: %w", err)
			}
			tlsConfig.RootCAs = x509.NewCertPool()
			if !tlsConfig.RootCAs.AppendCertsFromPEM(pem) {
				return nil, errors.New("CLICKHOUSE_TLS_CA_FILE holds no PEM certificate")
			}
		}
	}
	conn, err := ch.Open(&ch.Options{
		TLS:          tlsConfig,
		Addr:         db.Addrs,
		Auth:         ch.Auth{Database: database, Username: db.Username, Password: db.Password},
		DialTimeout:  5 * time.Second,
		ReadTimeout:  5 * time.Minute,
		MaxOpenConns: 8,
		MaxIdleConns: 4,
		ClientInfo:   ch.ClientInfo{Products: []struct{ Name, Version string }{{Name: "ottu-recon", Version: "1"}}},
		Logger:       db.QueryLog,
	})
	if err != nil {
		return nil, fmt.Errorf("open clickhouse: %w", err)
	}
	return conn, nil
}

// Conn returns the underlying connection.
func (db *DB) Conn() driver.Conn { return db.conn }

// Ping checks the server answers.
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	return db.conn.Ping(ctx)
}

// Now returns the server's clock.
func (db *DB) Now(ctx context.Context) (time.Time, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	var sec uint32
	if err := db.conn.QueryRow(ctx, "SELECT toUInt32(now())").Scan(&sec); err != nil {
		return time.Time{}, fmt.Errorf("read clickhouse clock: %w", err)
	}
	return time.Unix(int64(sec), 0).UTC(), nil
}

// Close closes the connection.
func (db *DB) Close() error {
	if db.conn == nil {
		return nil
	}
	return db.conn.Close()
}

// timeout applies QueryTimeout when ctx has no deadline.
func (db *DB) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, db.QueryTimeout)
}

// MigrateResult tells what Migrate did.
type MigrateResult struct {
	CreatedDatabase bool
	Applied         []string // names of the files applied now
}

// Migrate creates the database if missing, then applies every schema file not
// yet recorded in schema_migrations, in order, recording each after all its
// statements succeeded. It is idempotent: a second run applies nothing, and a
// file interrupted half-way is applied again from the start (every statement
// is IF NOT EXISTS). Call it before Open, or after: it uses its own connection.
func (db *DB) Migrate(ctx context.Context) (MigrateResult, error) { return db.migrate(ctx, 0) }

// MigrateTimeout bounds a Migrate whose ctx has no deadline.
const MigrateTimeout = 10 * time.Minute

// MigrateTo applies the migrations up to version (and no backfill): a
// database as an earlier release left it, for tests and benchmarks of the
// upgrade (`yardstick schema-at`).
func (db *DB) MigrateTo(ctx context.Context, version int) (MigrateResult, error) {
	return db.migrate(ctx, version)
}

// migrate applies the migrations up to version upTo (0: all).
func (db *DB) migrate(ctx context.Context, upTo int) (MigrateResult, error) {
	var res MigrateResult
	if db.QueryTimeout <= 0 {
		db.QueryTimeout = 60 * time.Second
	}
	// The schema's statements share one budget, longer than one query's:
	// on a cluster each DDL statement waits for every node's DDL queue, and
	// a database of an early version has dozens to apply.
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, max(db.QueryTimeout, MigrateTimeout))
		defer cancel()
	}
	admin, err := db.dial("default")
	if err != nil {
		return res, err
	}
	defer admin.Close()
	var exists uint8
	if err := admin.QueryRow(ctx, "SELECT count() > 0 FROM system.databases WHERE name = ?", db.Database).Scan(&exists); err != nil {
		return res, fmt.Errorf("look up database %s: %w", db.Database, err)
	}
	if exists == 0 {
		create := "CREATE DATABASE IF NOT EXISTS " + quoteIdent(db.Database)
		if db.Cluster != "" {
			create += " ON CLUSTER " + quoteIdent(db.Cluster)
		}
		if err := admin.Exec(ctx, create); err != nil {
			return res, fmt.Errorf("create database %s: %w", db.Database, err)
		}
		res.CreatedDatabase = true
	}
	conn, err := db.dial(db.Database)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	if db.Cluster != "" {
		if err := db.eachNode(ctx, "SELECT count() FROM system.zookeeper WHERE path = '/'", true); err != nil {
			// An ON CLUSTER query sent to a node with no ZooKeeper session
			// crashes 18.16: every node must reach ZooKeeper first.
			return res, fmt.Errorf("cluster %s: a node cannot reach ZooKeeper: %w", db.Cluster, err)
		}
	}
	if err := conn.Exec(ctx, db.onCluster(`CREATE TABLE IF NOT EXISTS schema_migrations (
		version UInt32, name String, applied_at DateTime
	) ENGINE = MergeTree ORDER BY version`)); err != nil {
		return res, fmt.Errorf("create schema_migrations: %w", err)
	}
	applied := map[uint32]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return res, fmt.Errorf("read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return res, fmt.Errorf("read schema_migrations: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("read schema_migrations: %w", err)
	}
	migrations, err := schema.Migrations(db.Database)
	if err != nil {
		return res, err
	}
	for _, m := range migrations {
		if applied[uint32(m.Version)] {
			continue
		}
		if upTo > 0 && m.Version > upTo {
			break
		}
		for i, stmt := range m.Statements {
			if table, column, ok := schema.AddColumn(stmt); ok {
				var n uint64
				if err := conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?",
					db.Database, table, column).Scan(&n); err != nil {
					return res, fmt.Errorf("apply %s statement %d: look up column: %w", m.Name, i+1, err)
				}
				if n > 0 {
					continue // applied by an earlier, interrupted run
				}
			}
			if db.Cluster != "" && optimize.MatchString(stmt) {
				// On a replicated table 18.16 refuses OPTIMIZE ... FINAL
				// ("Unknown log entry type", code 49) on every node. A plain
				// OPTIMIZE merges what it can, and the merge replicates; what
				// it leaves is merged later (the schema's OPTIMIZEs only
				// settle defaults of rows that predate a column, and a pass
				// reads those rows either way): every node is asked, one
				// success is enough.
				stmt = finalSuffix.ReplaceAllString(schema.Qualify(stmt, db.Database), "")
				if err := db.eachNode(ctx, stmt, false); err != nil {
					return res, fmt.Errorf("apply %s statement %d: %w", m.Name, i+1, err)
				}
				continue
			}
			if err := conn.Exec(ctx, db.onCluster(stmt)); err != nil {
				return res, fmt.Errorf("apply %s statement %d: %w", m.Name, i+1, err)
			}
		}
		// Inserts go through a batch: an INSERT with inline VALUES over the
		// native protocol hangs on 18.16.
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO schema_migrations (version, name, applied_at)")
		if err == nil {
			err = batch.Append(uint32(m.Version), m.Name, time.Now().UTC())
		}
		if err == nil {
			err = batch.Send()
		}
		if err != nil {
			return res, fmt.Errorf("record %s: %w", m.Name, err)
		}
		res.Applied = append(res.Applied, m.Name)
	}
	return res, nil
}

var (
	optimize    = regexp.MustCompile(`(?i)^\s*OPTIMIZE\s`)
	finalSuffix = regexp.MustCompile(`(?i)\s+FINAL\s*$`)
)

// eachNode runs stmt on every address of Addrs, one connection each: on all
// of them when all is set, else on at least one (the errors of the others
// are dropped).
func (db *DB) eachNode(ctx context.Context, stmt string, all bool) error {
	var errs []error
	ok := 0
	for _, addr := range db.Addrs {
		node := *db
		node.Addrs = []string{addr}
		conn, err := node.dial("default")
		if err == nil {
			err = conn.Exec(ctx, stmt)
			conn.Close()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		ok++
	}
	if (all && len(errs) > 0) || ok == 0 {
		return errors.Join(errs...)
	}
	return nil
}

// onCluster rewrites a schema statement for Cluster, when set. Unqualified
// tables are qualified with the database: a distributed DDL query runs on
// every host, whose session has no current database of ours.
func (db *DB) onCluster(stmt string) string {
	if db.Cluster == "" {
		return stmt
	}
	return schema.OnCluster(schema.Qualify(stmt, db.Database), db.Cluster, db.Database)
}

func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "`", "\\`") + "`"
}

// each runs query and hands every row to scan, in order; what names the rows
// in errors ("query payment deliveries: ...").
func (db *DB) each(ctx context.Context, what, query string, args []any, scan func(driver.Rows) error) error {
	rows, err := db.conn.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("query %s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("scan %s: %w", what, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}

// collect runs query and returns what scan makes of each row, in order; what
// names the rows in errors.
func collect[T any](ctx context.Context, db *DB, what, query string, args []any, scan func(driver.Rows) (T, error)) ([]T, error) {
	var out []T
	err := db.each(ctx, what, query, args, func(rows driver.Rows) error {
		v, err := scan(rows)
		out = append(out, v)
		return err
	})
	return out, err
}
