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
