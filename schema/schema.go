// Package schema holds ottu-recon's ClickHouse DDL as numbered files, embedded
// so that `reconcile migrate`, `reconcile serve` and the tests apply exactly
// the same statements.
//
// Rules for the files, which must run on ClickHouse 18.16 (the tests) and 24+
// (production): every statement is idempotent (IF NOT EXISTS, IF EXISTS), so
// a file interrupted half-way is simply applied again; INSERTs name their
// columns; no JSONExtract, DateTime64, LowCardinality or *OrNull parsers;
// statements are separated by a line ending in ";"; a column is added with a
// plain "ALTER TABLE t ADD COLUMN c" (see AddColumn). The token {db} stands for
// the database: views name their tables with it, because a view's query must
// not depend on the session's current database.
package schema

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

//go:embed *.sql
var files embed.FS

const backfillSuffix = ".backfill.sql"

// Migration is one numbered file, and its backfill if it has one.
type Migration struct {
	Version    int
	Name       string
	Statements []string
	// Backfill is what NNNN_name.backfill.sql writes for the rows stored
	// before the migration's materialized views existed: statements that
	// each read one partition of one event table (Partition).
	Backfill []Backfill
}

// Backfill is one statement of a backfill file: it reads the partition
// {partition} (toYYYYMM(received_at)) of Source, a table partitioned by
// month of received_at.
type Backfill struct {
	Source    string
	Statement string
}

// Partition returns the statement for one partition.
func (b Backfill) Partition(p uint32) string {
	return strings.ReplaceAll(b.Statement, "{partition}", strconv.FormatUint(uint64(p), 10))
}

var backfillSource = regexp.MustCompile("(?s)\\bFROM `(?:[^`\\\\]|\\\\.)*`\\.([A-Za-z_][A-Za-z0-9_]*)\\b")

// Migrations returns the migrations in version order, with {db} replaced.
func Migrations(database string) ([]Migration, error) {
	names, err := fs.Glob(files, "*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Migration
	for _, name := range names {
		if strings.HasSuffix(name, backfillSuffix) {
			continue // read with its migration
		}
		num, _, ok := strings.Cut(name, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("schema file %s: name must start with a number and _", name)
		}
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		m := Migration{Version: version, Name: name}
		for _, stmt := range split(string(b)) {
			m.Statements = append(m.Statements, strings.ReplaceAll(stmt, "{db}", quoteIdent(database)))
		}
		if b, err := files.ReadFile(strings.TrimSuffix(name, ".sql") + backfillSuffix); err == nil {
			for _, stmt := range split(string(b)) {
				stmt = strings.ReplaceAll(stmt, "{db}", quoteIdent(database))
				src := backfillSource.FindStringSubmatch(stmt)
				if src == nil || !strings.Contains(stmt, "{partition}") {
					return nil, fmt.Errorf("schema file %s: a backfill statement must read FROM {db}.table WHERE ... {partition}", name)
				}
				m.Backfill = append(m.Backfill, Backfill{Source: src[1], Statement: stmt})
			}
		}
		if len(out) > 0 && out[len(out)-1].Version == version {
			return nil, fmt.Errorf("schema files %s and %s share version %d", out[len(out)-1].Name, name, version)
		}
		out = append(out, m)
	}
	return out, nil
}

// split cuts a file into statements at lines ending in ";", dropping comments.
func split(text string) []string {
	var out []string
	var cur strings.Builder
	for line := range strings.SplitSeq(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") || trimmed == "" {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			stmt := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			out = append(out, stmt)
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

var addColumn = regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\s+([A-Za-z_][A-Za-z0-9_]*)\s+ADD\s+COLUMN\s+([A-Za-z_][A-Za-z0-9_]*)\s`)

// AddColumn tells whether stmt is "ALTER TABLE t ADD COLUMN c ...", which
// ClickHouse 18.16 cannot write with IF NOT EXISTS: the migrator runs it only
// when the column is missing.
func AddColumn(stmt string) (table, column string, ok bool) {
	m := addColumn.FindStringSubmatch(stmt)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// quoteIdent quotes a database name for ClickHouse.
func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "`", "\\`") + "`"
}
