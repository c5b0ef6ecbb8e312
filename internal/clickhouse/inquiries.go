package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// throttledKeys lists the keys Ottu's per-transaction throttle does not
// allow a question about now (ledger.Throttle): a parent's session_id, or
// "order:" and an order_no, asked PerTransaction times in all or less than
// Apart ago. A question counts for both keys it names: the session asked
// about or answered with, and the order asked about or answered with.
const throttledKeys = `SELECT key FROM (
		SELECT session_id AS key, asked_at FROM ottu_inquiries WHERE session_id != ''
		UNION ALL
		SELECT concat('order:', order_no) AS key, asked_at FROM ottu_inquiries WHERE order_no != '')
	GROUP BY key HAVING count() >= {per} OR max(asked_at) > toDateTime({apart}, 'UTC')`

// youngParents lists the parents first seen less than NotBefore ago (by the
// earliest timestamp_utc or arrival of their deliveries: Ottu created them
// no later). Such a parent has only deliveries received since: only those
// parents are read to tell.
const youngParents = `SELECT session_id FROM (
		SELECT session_id, least(toUInt32(timestamp_utc), toUInt32(received_at)) AS first FROM payment_events
		WHERE session_id IN (SELECT session_id FROM payment_events WHERE received_at > toDateTime({young}, 'UTC')
			UNION ALL SELECT session_id FROM operation_events WHERE received_at > toDateTime({young}, 'UTC'))
		UNION ALL
		SELECT session_id, least(toUInt32(timestamp_utc), toUInt32(received_at)) AS first FROM operation_events
		WHERE session_id IN (SELECT session_id FROM payment_events WHERE received_at > toDateTime({young}, 'UTC')
			UNION ALL SELECT session_id FROM operation_events WHERE received_at > toDateTime({young}, 'UTC'))
	) AS seen GROUP BY session_id HAVING min(first) > {young}`

// throttle fills the throttle's numbers into query, at now.
func throttle(query string, th ledger.Throttle, now time.Time) string {
	return strings.NewReplacer("{per}", strconv.Itoa(th.PerTransaction),
		"{apart}", strconv.FormatInt(now.Add(-th.Apart).Unix(), 10),
		"{young}", strconv.FormatInt(now.Add(-th.NotBefore).Unix(), 10)).Replace(query)
}

// inquiryCandidatesQuery picks the parents with an open finding of the given
// codes to ask Ottu about, most severe first, never one the throttle does
// not allow yet (Ottu's throttle, docs/ottu-webhooks.md §7.1).
var inquiryCandidatesQuery = strings.NewReplacer("{severity_rank}", severityRank).Replace(`
SELECT session_id
FROM (
	SELECT session_id, max({severity_rank}) AS rank
	FROM findings WHERE ` + isOpen + ` AND code IN (SELECT arrayJoin(?))
	GROUP BY session_id
) AS c
WHERE session_id NOT IN (` + throttledKeys + `)
AND session_id NOT IN (` + youngParents + `)
ORDER BY rank DESC, session_id
LIMIT %d`)

// InquiryCandidates returns the parents whose findings need Ottu's word.
func (s *Store) InquiryCandidates(ctx context.Context, q ledger.InquiryQuery) ([]string, error) {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	codes := make([]string, len(q.Codes))
	for i, c := range q.Codes {
		codes[i] = string(c)
	}
	return collect(ctx, s.DB, "parents to ask Ottu about", throttle(fmt.Sprintf(inquiryCandidatesQuery, max(q.Limit, 1)), q.Throttle, q.Now.UTC()),
		[]any{codes}, func(rows driver.Rows) (id string, err error) { return id, rows.Scan(&id) })
}

// Inquiry is one question to Ottu's Payment Status Query and what it said.
type Inquiry struct {
	SessionID string // asked about, or (a question by order_no) answered with
	OrderNo   string // asked about, or carried by the answer
	AskedAt   time.Time
	Status    int // Ottu's HTTP status; 0 when it did not answer
	// Verdict is VerdictFound, VerdictNotFound, or "" (no verdict: Error
	// says why, and Body keeps the answer as it came).
	Verdict    string
	DeliveryID string // the answer, stored as a delivery (found only)
	State      string
	Amount     string // texts exactly as Ottu sent them
	Currency   string
	Sandbox    bool
	Children   []events.Child
	Error      string
	Body       []byte
	RunID      string
}

// Verdicts of an inquiry.
const (
	VerdictFound    = "found"
	VerdictNotFound = "not_found"
)

// RecordInquiry keeps a question to Ottu and its answer.
func (s *Store) RecordInquiry(ctx context.Context, q Inquiry) error {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	ids, states, amounts, currencies := []string{}, []string{}, []string{}, []string{}
	for _, c := range q.Children {
		ids, states = append(ids, c.SessionID), append(states, c.State)
		amounts, currencies = append(amounts, c.Amount.String()), append(currencies, c.CurrencyCode)
	}
	w := Writer{DB: s.DB}
	return w.insert(ctx, "ottu_inquiries", `INSERT INTO ottu_inquiries (session_id, order_no, asked_at, status, found, verdict, delivery_id,
		state, amount, currency_code, is_sandbox, child_session_ids, child_states, child_amounts, child_currencies, error, body, run_id)`,
		1, func(int) []any {
			return []any{q.SessionID, q.OrderNo, q.AskedAt, uint16(q.Status), b2u(q.Verdict == VerdictFound), q.Verdict, q.DeliveryID,
				q.State, q.Amount, q.Currency, b2u(q.Sandbox), ids, states, amounts, currencies, q.Error, string(q.Body), q.RunID}
		})
}

// PaymentKeys returns the signed identifiers the payment webhooks of a
// parent carried: its order_no(s) and its attempts' reference_numbers.
func (s *Store) PaymentKeys(ctx context.Context, sessionID string) (orderNos, references []string, err error) {
	ctx, cancel := s.DB.timeout(ctx)
	defer cancel()
	err = s.DB.conn.QueryRow(ctx, `SELECT groupUniqArray(order_no), groupUniqArray(reference_number)
		FROM payment_events WHERE session_id = ?`, sessionID).Scan(&orderNos, &references)
	if err != nil {
		return nil, nil, fmt.Errorf("read payment keys of %s: %w", sessionID, err)
	}
	return orderNos, references, nil
}

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
