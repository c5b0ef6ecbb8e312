package clickhouse

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/report"
)

// ExamplesPerCode is how many findings each code shows in a report.
const ExamplesPerCode = 3

// PGSideLimit caps the PG-side operations listed in a report.
const PGSideLimit = 200

// Report reads the report of everything since the given time.
func (s *Store) Report(ctx context.Context, since time.Time) (report.Report, error) {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	r := report.Report{Since: since.UTC()}
	var err error
	if r.Totals, err = s.totals(ctx, since); err != nil {
		return r, err
	}
	if r.Findings, err = s.findingGroups(ctx); err != nil {
		return r, err
	}
	if r.PGSide, err = s.pgSide(ctx, since); err != nil {
		return r, err
	}
	if r.Coverage, err = s.Coverage(ctx, since); err != nil {
		return r, err
	}
	if r.LastRun, err = s.lastRunSummary(ctx); err != nil {
		return r, err
	}
	return r, nil
}

// totals: purchases paid (parents whose latest state is paid, by their
// timestamp_utc) and captures, refunds, voids (operations at their latest
// state, by theirs), per day (in UTC, whatever the server's zone), currency
// and gateway. Sums are exact decimals, scanned as such.
var totalsQuery = totalsOf("payment_events", "session_id", "state", "amount", "currency_code", "gateway_account", 0,
	[]string{events.StatePaid}) + "\nUNION ALL\n" +
	totalsOf("operation_events", "reference_number", "txn_state", "txn_amount", "txn_currency_code", "pg_code", 1,
		[]string{events.TxnPaid, events.TxnRefunded, events.TxnVoided})

// totalsOf sums, per day, currency, gateway and state, the amounts of table's
// rows at their latest delivery (one per key) whose state is among states;
// operation marks the rows of operations (1) or payments (0).
func totalsOf(table, key, state, amount, currency, gateway string, operation int, states []string) string {
	return fmt.Sprintf(`SELECT toString(toDate(ts, 'UTC')) AS day, currency_code, gateway, %[7]d AS operation, st,
	sum(ifNull(amt, toDecimal128(0, 8))) AS total, count() AS n
FROM (
	SELECT %[2]s, argMax(%[3]s, %[9]s) AS st, tupleElement(argMax(tuple(%[4]s), %[9]s), 1) AS amt,
		argMax(%[5]s, %[9]s) AS currency_code, argMax(%[6]s, %[9]s) AS gateway, argMax(timestamp_utc, %[9]s) AS ts
	FROM %[1]s GROUP BY %[2]s
) AS latest_rows
WHERE st IN (%[8]s) AND ts >= ?
GROUP BY day, currency_code, gateway, st`, table, key, state, amount, currency, gateway, operation, sqlStrings(states), latest)
}

func (s *Store) totals(ctx context.Context, since time.Time) ([]report.Total, error) {
	rows, err := s.DB.conn.Query(ctx, totalsQuery, since.UTC(), since.UTC())
	if err != nil {
		return nil, fmt.Errorf("query totals: %w", err)
	}
	defer rows.Close()
	type key struct{ day, currency, gateway string }
	byKey := map[key]*report.Total{}
	for rows.Next() {
		var k key
		var (
			operation uint8
			state     string
			total     decimal.Decimal
			n         uint64
		)
		if err := rows.Scan(&k.day, &k.currency, &k.gateway, &operation, &state, &total, &n); err != nil {
			return nil, fmt.Errorf("scan totals: %w", err)
		}
		a := events.Amount{Decimal: total, Valid: true}
		t := byKey[k]
		if t == nil {
			zero := events.Amount{Valid: true}.Text(k.currency)
			t = &report.Total{Day: k.day, Currency: k.currency, Gateway: k.gateway, Paid: zero, Captured: zero, Refunded: zero, Voided: zero}
			byKey[k] = t
		}
		switch {
		case operation == 0: // a purchase paid
			t.Paid, t.PaidN = a.Text(k.currency), n
		case state == events.TxnPaid:
			t.Captured, t.CapturedN = a.Text(k.currency), n
		case state == events.TxnRefunded:
			t.Refunded, t.RefundedN = a.Text(k.currency), n
		case state == events.TxnVoided:
			t.Voided, t.VoidedN = a.Text(k.currency), n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read totals: %w", err)
	}
	return sortedTotals(byKey), nil
}

func sortedTotals[K comparable](m map[K]*report.Total) []report.Total {
	out := make([]report.Total, 0, len(m))
	for _, t := range m {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Day != b.Day {
			return a.Day > b.Day // newest day first
		}
		if a.Currency != b.Currency {
			return a.Currency < b.Currency
		}
		return a.Gateway < b.Gateway
	})
	return out
}

func (s *Store) findingGroups(ctx context.Context) ([]report.FindingGroup, error) {
	return collect(ctx, s.DB, "open findings", fmt.Sprintf(`
		SELECT code, toString(severity) AS sev, count(), arraySlice(arraySort(groupArray(concat(session_id, ': ', detail))), 1, %d)
		FROM findings WHERE `+isOpen+`
		GROUP BY code, severity
		ORDER BY severity DESC, code`, ExamplesPerCode), nil, func(rows driver.Rows) (report.FindingGroup, error) {
		var g report.FindingGroup
		if err := rows.Scan(&g.Code, &g.Severity, &g.Count, &g.Examples); err != nil {
			return g, err
		}
		return g, nil
	})
}

// pgSideQuery lists operations any delivery of which said source pg. It reads
// the table with GROUP BY, not the operations view: ClickHouse 18.16 returned
// garbage, failed ("would use 16.00 PiB") and once crashed on a Nullable
// decimal over the view as schema 5 wrote it, with LIMIT 1 BY
// (TestStore_ReportPGSide keeps it from coming back).
const pgSideQuery = `
SELECT reference_number, argMax(session_id, ` + latest + `), argMax(operation, ` + latest + `),
	tupleElement(argMax(tuple(txn_amount), ` + latest + `), 1), argMax(txn_currency_code, ` + latest + `),
	argMax(txn_state, ` + latest + `), toUInt32(argMax(timestamp_utc, ` + latest + `)) AS ts
FROM operation_events
GROUP BY reference_number
HAVING countIf(source = 'pg') > 0 AND ts >= toUInt32(?)
ORDER BY ts DESC, reference_number
LIMIT %d`

func (s *Store) pgSide(ctx context.Context, since time.Time) ([]report.PGOperation, error) {
	return collect(ctx, s.DB, "pg-side operations", fmt.Sprintf(pgSideQuery, PGSideLimit), []any{since.UTC()}, func(rows driver.Rows) (report.PGOperation, error) {
		var o report.PGOperation
		var amt *decimal.Decimal
		var ts uint32
		if err := rows.Scan(&o.ReferenceNumber, &o.SessionID, &o.Operation, &amt, &o.Currency, &o.State, &ts); err != nil {
			return o, err
		}
		o.Amount, o.Timestamp = amount(amt).Text(o.Currency), unixTime(ts)
		return o, nil
	})
}

func (s *Store) lastRunSummary(ctx context.Context) (*report.Run, error) {
	rows, err := s.DB.conn.Query(ctx, `SELECT run_id, started_at, parents_evaluated, findings_raised, findings_resolved,
		findings_open, error FROM recon_runs ORDER BY started_at DESC, finished_at DESC LIMIT 1`)
	if err != nil {
		return nil, fmt.Errorf("query last run: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	var r report.Run
	if err := rows.Scan(&r.ID, &r.Started, &r.Parents, &r.Raised, &r.Resolved, &r.Open, &r.Error); err != nil {
		return nil, fmt.Errorf("scan last run: %w", err)
	}
	r.Started = r.Started.UTC()
	return &r, nil
}
