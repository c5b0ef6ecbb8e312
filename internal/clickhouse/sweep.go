package clickhouse

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// The completeness sweep's selection (ledger.SweepQuery,
// docs/completeness.md). It reads what the watch window holds, not the
// history: the partitions of payment_events that months of the window
// cover, the updated_at column of merchant_orders, and the index of which
// parents carry an order_no (parent_keys) for the orders in the window.

// pendingParentsQuery: parents with a payment webhook received in the
// window {watch}..{pending} and none since, no terminal delivery, and a
// latest state Ottu moves on from; a parent known only from Ottu's record is
// followed through its order instead.
var pendingParentsQuery = `
SELECT session_id, '' AS order_no, toUInt32(last) AS since
FROM (
	SELECT session_id, argMax(state, ` + latest + `) AS st, argMax(order_no, ` + latest + `) AS ord, max(received_at) AS last
	FROM payment_events
	WHERE session_id IN (SELECT session_id FROM payment_events
		WHERE received_at >= toDateTime({watch}, 'UTC') AND NOT ` + isRecord + `)
	GROUP BY session_id
	HAVING max(is_terminal) = 0 AND last <= toDateTime({pending}, 'UTC') AND last >= toDateTime({watch}, 'UTC')
) AS p
WHERE st IN (` + sqlStrings(ledger.PendingStates) + `)
AND session_id NOT IN (` + throttledKeys + `)
AND concat('order:', ord) NOT IN (` + throttledKeys + `)
AND session_id NOT IN (` + youngParents + `)`

// ordersQuery: merchant orders last updated in the window {watch}..{grace}
// with no payment webhook for their order_no and no final state in Ottu's
// record of them, whose next question is due: the n-th question (n asked so
// far, at most {per}) waits until updated_at + grace + n * {spacing}, and
// never comes within Apart of the last.
var ordersQuery = `
SELECT '' AS session_id, order_no, toUInt32(updated) AS since
FROM (
	SELECT order_no, max(updated_at) AS updated
	FROM merchant_orders WHERE updated_at >= toDateTime({watch}, 'UTC')
	GROUP BY order_no
	HAVING updated <= toDateTime({grace}, 'UTC')
) AS o
ANY LEFT JOIN (
	SELECT order_no, count() AS asked, max(asked_at) AS last_asked
	FROM ottu_inquiries
	WHERE order_no IN (SELECT order_no FROM merchant_orders WHERE updated_at >= toDateTime({watch}, 'UTC'))
	GROUP BY order_no
) AS q USING order_no
WHERE asked < {per}
AND (asked = 0 OR last_asked <= toDateTime({apart}, 'UTC'))
AND toUInt32(updated) + {grace_seconds} + asked * {spacing} <= {now}
AND order_no NOT IN (
	SELECT order_no FROM payment_events
	WHERE session_id IN (SELECT session_id FROM parent_keys WHERE key_kind = 'order_no'
		AND key IN (SELECT order_no FROM merchant_orders WHERE updated_at >= toDateTime({watch}, 'UTC')))
	AND (NOT ` + isRecord + ` OR is_terminal = 1))`

// isRecord tells a payment delivery that is Ottu's signed record, which
// ottu-recon asked for (events.RecordIDPrefix), from a webhook.
var isRecord = "startsWith(delivery_id, " + sqlString(events.RecordIDPrefix) + ")"

// SweepCandidates returns what the completeness sweep asks Ottu about now,
// oldest first.
func (s *Store) SweepCandidates(ctx context.Context, q ledger.SweepQuery) ([]ledger.Question, error) {
	if q.Watch <= q.Grace || q.Limit <= 0 {
		return nil, nil
	}
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	now := q.Now.UTC()
	per := max(q.Throttle.PerTransaction, 1)
	query := strings.NewReplacer(
		"{watch}", strconvUnix(now.Add(-q.Watch)), "{pending}", strconvUnix(q.PendingBefore.UTC()), "{grace}", strconvUnix(now.Add(-q.Grace)),
		"{grace_seconds}", strconv.FormatInt(int64(q.Grace/time.Second), 10),
		"{spacing}", strconv.FormatInt(int64((q.Watch-q.Grace)/time.Duration(per)/time.Second), 10),
		"{now}", strconvUnix(now),
	).Replace(throttle("SELECT session_id, order_no, since FROM ("+pendingParentsQuery+"\nUNION ALL"+ordersQuery+
		") AS sweep ORDER BY since, session_id, order_no LIMIT "+strconv.Itoa(q.Limit), q.Throttle, now))
	return collect(ctx, s.DB, "what the completeness sweep asks", query, nil, func(rows driver.Rows) (ledger.Question, error) {
		var (
			q     ledger.Question
			since uint32
		)
		err := rows.Scan(&q.SessionID, &q.OrderNo, &since)
		q.Since = unixTime(since)
		return q, err
	})
}

// strconvUnix is t in Unix seconds, as text for a query.
func strconvUnix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
