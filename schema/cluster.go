package schema

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	createTable = regexp.MustCompile(`(?s)^(CREATE TABLE IF NOT EXISTS [^\s(]+)\s*\(`)
	engine      = regexp.MustCompile(`ENGINE = ((?:Replacing|Summing|Aggregating|Collapsing)?MergeTree)(?:\(([^)]*)\))?`)
	createView  = regexp.MustCompile(`(?s)^(CREATE VIEW IF NOT EXISTS \S+) AS\b`)
	createMV    = regexp.MustCompile(`(?s)^(CREATE MATERIALIZED VIEW IF NOT EXISTS \S+) TO\b`)
	alterTable  = regexp.MustCompile(`(?s)^(ALTER TABLE \S+) `)
	dropTable   = regexp.MustCompile(`(?s)^(DROP TABLE IF EXISTS \S+)$`)
)

// OnCluster rewrites a schema statement for a ClickHouse cluster
// (CLICKHOUSE_CLUSTER): tables, views (materialized too), ALTERs and DROPs run ON CLUSTER, and
// every MergeTree-family table becomes its Replicated* twin, replicated under
// /clickhouse/tables/{shard}/<database>/<table> with the server's {replica}
// macro. Other statements (OPTIMIZE, which a replicated table replicates
// itself) are returned as they are.
func OnCluster(stmt, cluster, database string) string {
	on := " ON CLUSTER " + quoteIdent(cluster)
	switch {
	case createTable.MatchString(stmt):
		name := createTable.FindStringSubmatch(stmt)[1]
		table := name[strings.LastIndex(name, " ")+1:]
		table = strings.Trim(table[strings.LastIndex(table, ".")+1:], "`")
		stmt = createTable.ReplaceAllString(stmt, "${1}"+on+" (")
		return engine.ReplaceAllStringFunc(stmt, func(e string) string {
			m := engine.FindStringSubmatch(e)
			args := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s', '{replica}'", escape(database), escape(table))
			if m[2] != "" {
				args += ", " + m[2]
			}
			return "ENGINE = Replicated" + m[1] + "(" + args + ")"
		})
	case createMV.MatchString(stmt):
		// Each node's view writes what is inserted on that node into its
		// replicated target, which replicates it.
		return createMV.ReplaceAllString(stmt, "${1}"+on+" TO")
	case createView.MatchString(stmt):
		return createView.ReplaceAllString(stmt, "${1}"+on+" AS")
	case alterTable.MatchString(stmt):
		return alterTable.ReplaceAllString(stmt, "${1}"+on+" ")
	case dropTable.MatchString(stmt):
		return stmt + on
	}
	return stmt
}

func escape(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `'`, `\'`) }

var (
	unqualifiedCreate = regexp.MustCompile(`^(CREATE TABLE IF NOT EXISTS )([A-Za-z_][A-Za-z0-9_]*)\b`)
	unqualifiedAlter  = regexp.MustCompile(`^((?:ALTER|OPTIMIZE) TABLE )([A-Za-z_][A-Za-z0-9_]*)\b`)
)

// Qualify names database in front of an unqualified table of a CREATE
// TABLE, ALTER TABLE or OPTIMIZE TABLE statement.
func Qualify(stmt, database string) string {
	q := "${1}" + strings.ReplaceAll(quoteIdent(database), "$", "$$") + ".${2}"
	stmt = unqualifiedCreate.ReplaceAllString(stmt, q)
	return unqualifiedAlter.ReplaceAllString(stmt, q)
}
