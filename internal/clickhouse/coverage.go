package clickhouse

import (
	"context"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ottu-recon/ottu-recon/internal/report"
)

// coverageQuery is the coverage view (schema/0012_completeness.sql) over
// the days from {since} on, reading only what those days hold: the orders
// updated since and every row of theirs, the parents with a delivery since
// and every delivery of theirs. TestCoverage holds it to the view.
var coverageQuery = `
SELECT toString(day), count() AS expected, toUInt64(sum(final)) AS accounted, toUInt64(sum(final AND NOT by_webhook)) AS recovered,
	toUInt64(sum(NOT final)) AS unknown
FROM (
	SELECT key, if(max(is_order) = 1, maxIf(d, is_order = 1), min(d)) AS day, max(terminal) AS final,
		max(webhook_terminal) AS by_webhook
	FROM (
		SELECT concat('o:', order_no) AS key, toDate(max(updated_at), 'UTC') AS d, toUInt8(1) AS is_order,
			toUInt8(0) AS terminal, toUInt8(0) AS webhook_terminal
		FROM merchant_orders
		WHERE order_no IN (SELECT order_no FROM merchant_orders WHERE updated_at >= toDateTime({since}, 'UTC'))
		GROUP BY order_no
		UNION ALL
		SELECT if(order_no != '' AND order_no IN (SELECT order_no FROM merchant_orders WHERE order_no IN (
				SELECT order_no FROM payment_events WHERE received_at >= toDateTime({since}, 'UTC'))),
				concat('o:', order_no), concat('s:', session_id)) AS key,
			toDate(min(received_at), 'UTC') AS d, toUInt8(0) AS is_order, max(is_terminal) AS terminal,
			max(is_terminal AND NOT ` + isRecord + `) AS webhook_terminal
		FROM payment_events
		WHERE session_id IN (SELECT session_id FROM payment_events WHERE received_at >= toDateTime({since}, 'UTC'))
		GROUP BY session_id, order_no
	) AS keyed
	GROUP BY key
) AS per_key
WHERE day >= toDate(toDateTime({since}, 'UTC'), 'UTC')
GROUP BY day
ORDER BY day`

// Coverage returns the coverage of the UTC days from since's on.
func (s *Store) Coverage(ctx context.Context, since time.Time) ([]report.Coverage, error) {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	query := strings.ReplaceAll(coverageQuery, "{since}", strconvUnix(since))
	return collect(ctx, s.DB, "coverage", query, nil, func(rows driver.Rows) (report.Coverage, error) {
		var d report.Coverage
		return d, rows.Scan(&d.Day, &d.Expected, &d.Accounted, &d.Recovered, &d.Unknown)
	})
}
