package clickhouse

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// A payment's story, as the console's payment page shows it.

// SessionsByKey returns the parents a search names: the session_id itself,
// or the parents carrying it as an order_no or a reference_number (of the
// payment or one of its operations).
func (db *DB) SessionsByKey(ctx context.Context, key string) ([]string, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	var out []string
	err := db.conn.QueryRow(ctx, `SELECT groupUniqArray(session_id) FROM parent_keys
		WHERE key_kind IN ('payment_reference', 'operation_reference', 'order_no') AND key = ?`, key).Scan(&out)
	if err != nil {
		return nil, fmt.Errorf("look up a search key: %w", err)
	}
	return append(out, key), nil
}

// Story reads everything about the parent sessionID: its deliveries, its
// order, Ottu's answers, its findings with their versions, and the actions
// people took. A parent with nothing stored returns a Story without
// deliveries or findings.
func (db *DB) Story(ctx context.Context, sessionID string) (*casefile.Story, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	s := &casefile.Story{SessionID: sessionID}
	rows, err := db.conn.Query(ctx, `
SELECT kind, e.delivery_id, received_at, stored_at, timestamp_utc, reference_number, operation, state, amount, txn_amount,
	currency, op_source, r.source, r.signature_scheme, r.key_index, seq, problem, order_no
FROM (
	SELECT 'payment' AS kind, delivery_id, toUInt32(received_at) AS received_at, toUInt32(stored_at) AS stored_at,
		toUInt32(timestamp_utc) AS timestamp_utc, reference_number, '' AS operation, state, amount,
		CAST(NULL AS Nullable(Decimal(38, 8))) AS txn_amount, currency_code AS currency, '' AS op_source,
		stream_seq AS seq, '' AS problem, order_no
	FROM payment_events WHERE session_id = ?
	UNION ALL
	SELECT 'operation', delivery_id, toUInt32(received_at), toUInt32(stored_at), toUInt32(timestamp_utc), reference_number,
		operation, txn_state, amount, txn_amount, txn_currency_code, source, stream_seq, '', order_no
	FROM operation_events WHERE session_id = ?
	UNION ALL
	SELECT 'unreadable', delivery_id, toUInt32(received_at), toUInt32(stored_at), 0, '', kind, '',
		CAST(NULL AS Nullable(Decimal(38, 8))), CAST(NULL AS Nullable(Decimal(38, 8))), '', '', stream_seq,
		concat(field, ': ', reason), ''
	FROM unreadable_webhooks WHERE session_id = ?
) AS e
ANY LEFT JOIN (
	SELECT delivery_id, source, signature_scheme, key_index FROM webhooks_raw
	WHERE delivery_id IN (
		SELECT delivery_id FROM payment_events WHERE session_id = ?
		UNION ALL SELECT delivery_id FROM operation_events WHERE session_id = ?)
) AS r USING (delivery_id)
ORDER BY received_at, seq, delivery_id
LIMIT 1 BY delivery_id`, sessionID, sessionID, sessionID, sessionID, sessionID)
	if err != nil {
		return nil, fmt.Errorf("query deliveries: %w", err)
	}
	for rows.Next() {
		var d casefile.Delivery
		var received, stored, ts uint32
		var orderNo string
		if err := rows.Scan(&d.Kind, &d.DeliveryID, &received, &stored, &ts, &d.ReferenceNumber, &d.Operation, &d.State,
			&d.Amount, &d.TxnAmount, &d.Currency, &d.Source, &d.Via, &d.Scheme, &d.KeyIndex, &d.Seq, &d.Problem, &orderNo); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan delivery: %w", err)
		}
		d.ReceivedAt, d.StoredAt, d.Timestamp = unixTime(received), unixTime(stored), unixTime(ts)
		if d.Kind == "payment" && orderNo != "" {
			s.OrderNo = orderNo
		}
		s.Deliveries = append(s.Deliveries, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read deliveries: %w", err)
	}

	// The rest at once: the page's time is the slowest part's.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return db.storyOrder(gctx, s) })
	g.Go(func() error { return db.storyAnswers(gctx, s) })
	g.Go(func() error { return db.storyVersions(gctx, s) })
	g.Go(func() error { return db.storyFindings(gctx, s) })
	g.Go(func() (err error) { s.Actions, err = db.actions(gctx, sessionID); return err })
	return s, g.Wait()
}

func (db *DB) storyOrder(ctx context.Context, s *casefile.Story) error {
	if s.OrderNo == "" {
		return nil
	}
	var o casefile.MerchantOrder
	var n uint64
	var updated uint32
	err := db.conn.QueryRow(ctx, `SELECT count(), argMax(amount, updated_at), argMax(currency_code, updated_at), toUInt32(max(updated_at))
		FROM merchant_orders WHERE order_no = ?`, s.OrderNo).Scan(&n, &o.Amount, &o.Currency, &updated)
	if err != nil {
		return fmt.Errorf("query merchant order: %w", err)
	}
	if n > 0 {
		o.UpdatedAt = unixTime(updated)
		s.Order = &o
	}
	return nil
}

func (db *DB) storyAnswers(ctx context.Context, s *casefile.Story) (err error) {
	s.Inquiries, err = collect(ctx, db, "Ottu's answers", `SELECT asked_at, status, verdict, state, amount, currency_code, error
		FROM ottu_inquiries WHERE session_id = ? ORDER BY asked_at`, []any{s.SessionID}, func(rows driver.Rows) (casefile.OttuAnswer, error) {
		var q casefile.OttuAnswer
		err := rows.Scan(&q.AskedAt, &q.Status, &q.Verdict, &q.State, &q.Amount, &q.Currency, &q.Error)
		q.AskedAt = q.AskedAt.UTC()
		return q, err
	})
	return err
}

func (db *DB) storyVersions(ctx context.Context, s *casefile.Story) (err error) {
	s.Versions, err = collect(ctx, db, "finding versions", `SELECT code, toString(severity), toString(status), last_seen, detail, evidence,
		run_id, alerted_at FROM findings_log WHERE session_id = ? ORDER BY version`, []any{s.SessionID}, func(rows driver.Rows) (casefile.FindingVersion, error) {
		var v casefile.FindingVersion
		err := rows.Scan(&v.Code, &v.Severity, &v.Status, &v.LastSeen, &v.Detail, &v.Evidence, &v.RunID, &v.AlertedAt)
		v.LastSeen = v.LastSeen.UTC()
		return v, err
	})
	return err
}

func (db *DB) storyFindings(ctx context.Context, s *casefile.Story) error {
	var (
		dec ledger.Decisions
		err error
	)
	if s.Findings, err = db.latest(ctx, true, " WHERE session_id = ?", s.SessionID); err != nil {
		return err
	}
	if dec, err = db.decisions(ctx, " AND session_id = ?", s.SessionID); err != nil {
		return err
	}
	for i := range s.Findings {
		f := &s.Findings[i]
		f.Apply(dec.Of(f.Key(), f.Gateway, f.Currency))
	}
	slices.SortFunc(s.Findings, func(a, b casefile.Finding) int {
		return cmp.Or(cmp.Compare(ledger.SeverityRank(ledger.Severity(b.Severity)), ledger.SeverityRank(ledger.Severity(a.Severity))),
			cmp.Compare(a.Code, b.Code))
	})
	return nil
}

// actions returns the actions people took on the parent's findings, oldest
// first.
func (db *DB) actions(ctx context.Context, sessionID string) ([]casefile.Action, error) {
	return collect(ctx, db, "finding_actions", `SELECT session_id, code, toString(action), actor, at, note, until, evidence, action_id
		FROM finding_actions WHERE session_id = ? ORDER BY at, action_id LIMIT 1 BY action_id`, []any{sessionID}, func(rows driver.Rows) (casefile.Action, error) {
		var a casefile.Action
		err := rows.Scan(&a.SessionID, &a.Code, &a.Action, &a.Actor, &a.At, &a.Note, &a.Until, &a.Evidence, &a.ID)
		a.At = a.At.UTC()
		if a.Until != nil {
			*a.Until = a.Until.UTC()
		}
		return a, err
	})
}

// RawBody returns the body of the delivery id of the parent sessionID as it
// was received (webhooks_raw, or unreadable_webhooks); false if the parent
// has no such delivery.
func (db *DB) RawBody(ctx context.Context, sessionID, deliveryID string) ([]byte, bool, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	var bodies []string
	err := db.conn.QueryRow(ctx, `SELECT groupArray(body) FROM (
		SELECT body FROM webhooks_raw WHERE delivery_id = ? AND delivery_id IN (
			SELECT delivery_id FROM payment_events WHERE session_id = ?
			UNION ALL SELECT delivery_id FROM operation_events WHERE session_id = ?)
		UNION ALL
		SELECT body FROM unreadable_webhooks WHERE delivery_id = ? AND session_id = ?)`,
		deliveryID, sessionID, sessionID, deliveryID, sessionID).Scan(&bodies)
	if err != nil {
		return nil, false, fmt.Errorf("query raw body: %w", err)
	}
	if len(bodies) == 0 {
		return nil, false, nil
	}
	return []byte(bodies[0]), true, nil
}
