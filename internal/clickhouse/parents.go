package clickhouse

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// How a pass reads parents (docs/performance.md): in chunks of neighbouring
// session_ids, so each query reads its own range of the tables' primary key
// (session_id comes first; the chunk's condition is a PREWHERE, so the other
// columns are read only where it holds) and Go folds one chunk's deliveries into parents
// before it reads the next. ClickHouse only filters and streams rows: an
// aggregation over the whole history would hold a state per parent (18.16
// runs out of memory at a million parents) and compare tuples through its
// slow generic path; Go folds a row in well under a microsecond. Memory is
// bounded by the chunk, not by the history.
const (
	// DefaultChunkRows is how many deliveries a chunk of a full pass holds,
	// about: the boundaries come from a sample.
	DefaultChunkRows = 100_000
	// defaultChunkSessions bounds a chunk of an incremental pass. One query
	// per table reads a whole chunk (each query costs something of its own,
	// whatever it reads), its parents sent beside the query as a table
	// (inList): a list in the query's text costs ClickHouse 18.16 about 10
	// µs an element to parse, a table 3.
	defaultChunkSessions = 20_000
)

// chunk is a set of parents read together: a range of session_ids [lo, hi)
// (an empty bound is open), or a list of them. With known set, months are
// the only months of received_at (toYYYYMM, the event tables' partitions)
// holding deliveries of the list's parents.
type chunk struct {
	lo, hi   string
	sessions []string
	months   []uint32
	known    bool
}

// set is the chunk's list of session_ids as a value for IN ?.
func (c chunk) set() clickhouse.GroupSet {
	set := make([]any, len(c.sessions))
	for i, s := range c.sessions {
		set[i] = s
	}
	return clickhouse.GroupSet{Value: set}
}

// cond returns the condition that keeps the chunk's parents, on column, and
// the context to run its query with.
func (s *Store) cond(ctx context.Context, c chunk, column string) (context.Context, string, []any, error) {
	if c.sessions != nil {
		ctx, cond, err := s.inList(ctx, column, c.sessions)
		return ctx, cond, nil, err
	}
	var conds []string
	var args []any
	if c.lo != "" {
		conds, args = append(conds, column+" >= ?"), append(args, c.lo)
	}
	if c.hi != "" {
		conds, args = append(conds, column+" < ?"), append(args, c.hi)
	}
	if len(conds) == 0 {
		return ctx, "1", nil, nil
	}
	return ctx, strings.Join(conds, " AND "), args, nil
}

// inList returns "expr IN <table>" with values sent beside the query as an
// external table (one String column, v), and the context that sends it.
// With a QueryLog, the values are logged under the table's name ("external
// table"), for the modern-ClickHouse check to replay the query.
func (s *Store) inList(ctx context.Context, expr string, values []string) (context.Context, string, error) {
	name := fmt.Sprintf("_recon_list_%d", s.lists.Add(1))
	t, err := ext.NewTable(name, ext.Column("v", "String"))
	if err != nil {
		return ctx, "", err
	}
	for _, v := range values {
		if err := t.Append(v); err != nil {
			return ctx, "", fmt.Errorf("external table: %w", err)
		}
	}
	if s.DB.QueryLog != nil {
		s.DB.QueryLog.Debug("external table", "name", name, "values", values)
	}
	return clickhouse.Context(ctx, clickhouse.WithExternalTable(t)), expr + " IN " + name, nil
}

// Parents streams the selected parents in session_id order, a chunk at a
// time.
func (s *Store) Parents(ctx context.Context, sel ledger.Selection, fn func(*ledger.Parent) error) error {
	indexed, err := s.indexed(ctx)
	if err != nil {
		return err
	}
	shared, err := s.sharedRefs(ctx, sel, indexed)
	if err != nil {
		return err
	}
	var chunks []chunk
	if sel.All {
		chunks, err = s.ranges(ctx)
	} else {
		chunks, err = s.candidateChunks(ctx, sel, indexed)
	}
	if err != nil {
		return err
	}
	for _, c := range chunks {
		parents, err := s.readChunk(ctx, c, indexed)
		if err != nil {
			return err
		}
		for _, p := range parents {
			p.Shared = shared[p.SessionID]
			if err := fn(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// ranges splits every parent into ranges of session_id of about
// s.ChunkRows deliveries each, from a sample of the deliveries (every
// parent whose session_id hashes to 0 modulo the sampling rate, all its
// deliveries).
func (s *Store) ranges(ctx context.Context) ([]chunk, error) {
	size := cmp.Or(s.ChunkRows, DefaultChunkRows)
	rate := min(64, max(1, size/1024))
	stride := max(1, size/rate)
	rows, err := s.DB.conn.Query(ctx, fmt.Sprintf(`
SELECT session_id FROM (
	SELECT session_id FROM payment_events WHERE cityHash64(session_id) %% %[1]d = 0
	UNION ALL
	SELECT session_id FROM operation_events WHERE cityHash64(session_id) %% %[1]d = 0
) AS sampled
ORDER BY session_id`, rate))
	if err != nil {
		return nil, fmt.Errorf("sample session_ids: %w", err)
	}
	defer rows.Close()
	var bounds []string
	for n := 0; rows.Next(); n++ {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("scan sampled session_id: %w", err)
		}
		if n%stride == stride-1 && id != "" && (len(bounds) == 0 || id != bounds[len(bounds)-1]) {
			bounds = append(bounds, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sample session_ids: %w", err)
	}
	chunks := make([]chunk, 0, len(bounds)+1)
	lo := ""
	for _, b := range bounds {
		chunks = append(chunks, chunk{lo: lo, hi: b})
		lo = b
	}
	return append(chunks, chunk{lo: lo}), nil
}

// ChangeIndexVersion is the schema version whose indexes (parent_changes,
// parent_keys) an incremental pass reads once their backfill is complete.
const ChangeIndexVersion = 10

// indexed tells whether the change indexes are complete; once they are, they
// stay so.
func (s *Store) indexed(ctx context.Context) (bool, error) {
	if s.changeIndex.Load() {
		return true, nil
	}
	ok, err := s.DB.BackfillComplete(ctx, ChangeIndexVersion)
	if err != nil {
		return false, err
	}
	s.changeIndex.Store(ok)
	return ok, nil
}

// candidateChunks lists the parents sel selects, in order, in chunks.
func (s *Store) candidateChunks(ctx context.Context, sel ledger.Selection, indexed bool) ([]chunk, error) {
	union, args, err := candidates(sel, indexed)
	if err != nil {
		return nil, err
	}
	rows, err := s.DB.conn.Query(ctx, "SELECT candidate FROM ("+union+") AS candidates GROUP BY candidate ORDER BY candidate", args...)
	if err != nil {
		return nil, fmt.Errorf("query the parents to evaluate: %w", err)
	}
	defer rows.Close()
	var chunks []chunk
	cur, most := []string{}, cmp.Or(s.chunkSessions, defaultChunkSessions)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("scan a parent to evaluate: %w", err)
		}
		if len(cur) == most {
			chunks, cur = append(chunks, chunk{sessions: cur}), []string{}
		}
		cur = append(cur, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the parents to evaluate: %w", err)
	}
	if len(cur) > 0 {
		chunks = append(chunks, chunk{sessions: cur})
	}
	return chunks, nil
}

// candidates returns a query of the parents (column candidate) an incremental
// selection keeps, and its args. With the change indexes (indexed), every
// part reads a range of an index or of a small table: what it costs follows
// what changed, not the history. Without them (a database whose backfill is
// not complete yet) it scans columns of the event tables.
func candidates(sel ledger.Selection, indexed bool) (string, []any, error) {
	since := sel.StoredSince.UTC()
	var parts []string
	var args []any
	add := func(q string, a ...any) { parts, args = append(parts, q), append(args, a...) }
	if indexed {
		add("SELECT session_id AS candidate FROM parent_changes WHERE kind = 'payment' AND at >= ?", since)
		add("SELECT session_id AS candidate FROM parent_changes WHERE kind = 'operation' AND at >= ?", since)
	} else {
		add("SELECT session_id AS candidate FROM payment_events WHERE stored_at >= ?", since)
		add("SELECT session_id AS candidate FROM operation_events WHERE stored_at >= ?", since)
	}
	for _, w := range sel.Windows {
		a, ok := anchorSQL[w.Anchor]
		if !ok {
			return "", nil, fmt.Errorf("no query for anchor %s", w.Anchor)
		}
		// A SELECT per condition, not one with ORs: each reads only its
		// own columns. The received_at windows read a month or two of the
		// event tables (their partitions); the others, a range of the index.
		if indexed && a.index != "" {
			add("SELECT session_id AS candidate FROM parent_changes WHERE kind = '"+a.index+"' AND at >= ? AND at <= ?", w.From.UTC(), w.To.UTC())
			continue
		}
		add("SELECT session_id AS candidate FROM "+a.table+" WHERE "+a.cond, w.From.UTC(), w.To.UTC())
	}
	add("SELECT "+unreadableKey+" AS candidate FROM unreadable_webhooks WHERE stored_at >= ?", since)
	if indexed {
		add("SELECT session_id AS candidate FROM parent_keys WHERE key_kind = 'order_no' AND key IN (SELECT order_no FROM merchant_orders WHERE inserted_at >= ?)", since)
	} else {
		add("SELECT session_id AS candidate FROM payment_events WHERE order_no IN (SELECT order_no FROM merchant_orders WHERE inserted_at >= ?)", since)
	}
	add("SELECT session_id AS candidate FROM findings WHERE status = 'open'")
	add("SELECT session_id AS candidate FROM ottu_inquiries WHERE asked_at >= ?", since)
	if len(sel.Sessions) > 0 {
		add("SELECT arrayJoin(?) AS candidate", sel.Sessions)
	}
	return strings.Join(parts, "\n\tUNION ALL "), args, nil
}

// sharedQuery finds the signed references (a payment attempt's or an
// operation's reference_number) delivered under more than one parent: one
// row per parent and reference, with the number of parents and the first 20
// of them. %[2]s picks the references to look at: in a full pass, an
// aggregation over 64-bit hashes first finds the few whose deliveries
// disagree on the parent (a collision only adds one the exact step drops);
// in an incremental pass, those of the selected parents. One signed body
// re-posted under thousands of session_ids must not cost thousands squared.
const sharedQuery = `
SELECT parent, reference_number, n, arraySlice(sessions, 1, 20)
FROM (
	SELECT reference_number, arraySort(groupUniqArray(session_id)) AS sessions, length(sessions) AS n
	FROM %[1]s
	WHERE reference_number != '' AND %[2]s
	GROUP BY reference_number
	HAVING n > 1
) AS shared
ARRAY JOIN sessions AS parent`

// sharedByHash picks, in a full pass, the references whose deliveries name
// more than one parent, by hash.
const sharedByHash = `cityHash64(reference_number) IN (
		SELECT h FROM (
			SELECT cityHash64(reference_number) AS h, min(cityHash64(session_id)) AS lo, max(cityHash64(session_id)) AS hi
			FROM %[1]s
			WHERE reference_number != ''
			GROUP BY h
		) AS hashed WHERE lo != hi)`

// sharedByIndex is sharedQuery over parent_keys: the parents of the
// references %[2]s picks, read from the index's range of each reference
// rather than from a scan of the event table.
const sharedByIndex = `
SELECT parent, key, n, arraySlice(sessions, 1, 20)
FROM (
	SELECT key, arraySort(groupUniqArray(session_id)) AS sessions, length(sessions) AS n
	FROM parent_keys
	WHERE key_kind = '%[1]s' AND key IN (%[2]s)
	GROUP BY key
	HAVING n > 1
) AS shared
ARRAY JOIN sessions AS parent`

// sharedRefs returns, per parent, the signed references it shares with
// another parent: every such reference in a full pass; in an incremental
// one, those that may have changed since the last (ledger.ReplayedWebhook is
// the one rule that reads them).
func (s *Store) sharedRefs(ctx context.Context, sel ledger.Selection, indexed bool) (map[string][]ledger.Shared, error) {
	out := map[string][]ledger.Shared{}
	for _, t := range []struct{ kind, table string }{{"payment", "payment_events"}, {"operation", "operation_events"}} {
		query, args := fmt.Sprintf(sharedQuery, t.table, fmt.Sprintf(sharedByHash, t.table)), []any(nil)
		if !sel.All {
			// A reference becomes shared only when a delivery of it is
			// stored; a parent that shared one before has an open
			// REPLAYED_WEBHOOK finding (it stays open while shared).
			refs := "SELECT reference_number FROM " + t.table + " WHERE stored_at >= ?"
			if indexed {
				refs = "SELECT reference_number FROM parent_changes WHERE kind = '" + t.kind + "' AND at >= ?"
			}
			refs += "\n\t\tUNION ALL SELECT reference_number FROM " + t.table +
				" WHERE session_id IN (SELECT session_id FROM findings WHERE status = 'open' AND code = ?)"
			args = []any{sel.StoredSince.UTC(), string(ledger.ReplayedWebhook)}
			if len(sel.Sessions) > 0 { // the parents the last pass could not read
				refs += "\n\t\tUNION ALL SELECT reference_number FROM " + t.table + " WHERE session_id IN ?"
				args = append(args, chunk{sessions: sel.Sessions}.set())
			}
			if indexed {
				query = fmt.Sprintf(sharedByIndex, t.kind+"_reference", refs)
			} else {
				query = fmt.Sprintf(sharedQuery, t.table, "reference_number IN ("+refs+")")
			}
		}
		rows, err := s.DB.conn.Query(ctx, query, args...)
		if err != nil {
			return nil, fmt.Errorf("query shared references: %w", err)
		}
		for rows.Next() {
			var parent string
			var n uint64
			sh := ledger.Shared{Kind: t.kind}
			if err := rows.Scan(&parent, &sh.ReferenceNumber, &n, &sh.Sessions); err != nil {
				rows.Close()
				return nil, fmt.Errorf("scan shared reference: %w", err)
			}
			sh.Parents = int(n)
			out[parent] = append(out[parent], sh)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read shared references: %w", err)
		}
	}
	for _, list := range out {
		slices.SortFunc(list, func(a, b ledger.Shared) int {
			return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ReferenceNumber, b.ReferenceNumber))
		})
	}
	return out, nil
}

// readChunk reads the parents of one chunk, in session_id order: it streams
// each table's rows of the chunk into a ledger.Fold, which decides what the
// parents are.
func (s *Store) readChunk(ctx context.Context, c chunk, indexed bool) ([]*ledger.Parent, error) {
	hint := len(c.sessions)
	if c.sessions == nil {
		hint = cmp.Or(s.ChunkRows, DefaultChunkRows) / 4
	}
	if c.sessions != nil && indexed {
		var err error
		if c.months, err = s.months(ctx, c.sessions); err != nil {
			return nil, err
		}
		c.known = true
	}
	f := ledger.NewFold(hint)
	// Payments and operations fold at once, each on a core of its own (the
	// fold keeps them apart); the rest attaches to the parents they made.
	opsDone := make(chan error, 1)
	go func() { opsDone <- s.streamOperations(ctx, c, f) }()
	err := s.streamPayments(ctx, c, f)
	if opsErr := <-opsDone; err == nil {
		err = opsErr
	}
	if err != nil {
		return nil, err
	}
	for _, step := range []func(context.Context, chunk, *ledger.Fold) error{s.streamOrders, s.streamUnreadable, s.streamOttu} {
		if err := step(ctx, c, f); err != nil {
			return nil, err
		}
	}
	return f.Parents(), nil
}

// months lists the months of received_at that hold deliveries of sessions
// (parent_months): a parent's deliveries cluster around its creation, so a
// pass reading parents that changed reads those months of the event tables,
// not every month that holds a session_id near theirs.
func (s *Store) months(ctx context.Context, sessions []string) ([]uint32, error) {
	ctx, in, err := s.inList(ctx, "session_id", sessions)
	if err != nil {
		return nil, err
	}
	rows, err := s.DB.conn.Query(ctx, "SELECT DISTINCT month FROM parent_months PREWHERE "+in)
	if err != nil {
		return nil, fmt.Errorf("query the months of parents: %w", err)
	}
	defer rows.Close()
	months := []uint32{}
	for rows.Next() {
		var m uint32
		if err := rows.Scan(&m); err != nil {
			return nil, fmt.Errorf("scan a month: %w", err)
		}
		months = append(months, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the months of parents: %w", err)
	}
	slices.Sort(months)
	return months, nil
}

// eventsCond is cond on the event tables: the chunk's parents, in its
// months when they are known (the partitions ClickHouse reads). skip: no
// month holds a delivery of them.
func (s *Store) eventsCond(ctx context.Context, c chunk) (_ context.Context, where string, args []any, skip bool, err error) {
	ctx, where, args, err = s.cond(ctx, c, "session_id")
	if err != nil || !c.known {
		return ctx, where, args, false, err
	}
	if len(c.months) == 0 {
		return ctx, "", nil, true, nil
	}
	list := make([]string, len(c.months))
	for i, m := range c.months {
		list[i] = strconv.FormatUint(uint64(m), 10)
	}
	return ctx, "toYYYYMM(received_at) IN (" + strings.Join(list, ", ") + ") AND " + where, args, false, nil
}

// amount turns a scanned Nullable(Decimal) into an Amount.
func amount(d *decimal.Decimal) events.Amount {
	if d == nil {
		return events.Amount{}
	}
	return events.Amount{Decimal: *d, Valid: true}
}

func unixTime(sec uint32) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(int64(sec), 0).UTC()
}

func (s *Store) streamPayments(ctx context.Context, c chunk, f *ledger.Fold) error {
	ctx, where, args, skip, err := s.eventsCond(ctx, c)
	if err != nil || skip {
		return err
	}
	rows, err := s.DB.conn.Query(ctx, `
SELECT session_id, order_no, state, amount, currency_code, refunded_amount, voided_amount, toUInt32(timestamp_utc),
	toUInt32(received_at), is_terminal, state_rank, stream_seq, child_session_ids, is_sandbox,
	if(gateway_name != '', gateway_name, gateway_account)
FROM payment_events
PREWHERE `+where, args...)
	if err != nil {
		return fmt.Errorf("query payment deliveries: %w", err)
	}
	defer rows.Close()
	var (
		r                            ledger.PaymentRow
		amt, refunded, voided        *decimal.Decimal
		timestamp, received          uint32
		terminal, stateRank, sandbox uint8
		seq                          uint64
	)
	for rows.Next() {
		if err := rows.Scan(&r.SessionID, &r.OrderNo, &r.State, &amt, &r.Currency, &refunded, &voided, &timestamp, &received,
			&terminal, &stateRank, &seq, &r.Children, &sandbox, &r.Gateway); err != nil {
			return fmt.Errorf("scan payment delivery: %w", err)
		}
		r.Amount, r.RefundedAmount, r.VoidedAmount = amount(amt), amount(refunded), amount(voided)
		r.Rank, r.Sandbox = ledger.NewRank(timestamp, received, terminal == 1, stateRank, seq), sandbox == 1
		f.AddPayment(&r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read payment deliveries: %w", err)
	}
	return nil
}

func (s *Store) streamOperations(ctx context.Context, c chunk, f *ledger.Fold) error {
	ctx, where, args, skip, err := s.eventsCond(ctx, c)
	if err != nil || skip {
		return err
	}
	rows, err := s.DB.conn.Query(ctx, `
SELECT session_id, reference_number, child_session_id, operation, source, txn_state, txn_currency_code, amount, txn_amount,
	toUInt32(timestamp_utc), toUInt32(received_at), is_terminal, state_rank, stream_seq, is_sandbox
FROM operation_events
PREWHERE `+where, args...)
	if err != nil {
		return fmt.Errorf("query operation deliveries: %w", err)
	}
	defer rows.Close()
	var (
		r                            ledger.OperationRow
		amt, txnAmount               *decimal.Decimal
		timestamp, received          uint32
		terminal, stateRank, sandbox uint8
		seq                          uint64
	)
	for rows.Next() {
		if err := rows.Scan(&r.SessionID, &r.ReferenceNumber, &r.Child, &r.Operation, &r.Source, &r.TxnState, &r.Currency, &amt,
			&txnAmount, &timestamp, &received, &terminal, &stateRank, &seq, &sandbox); err != nil {
			return fmt.Errorf("scan operation delivery: %w", err)
		}
		r.Amount, r.TxnAmount = amount(amt), amount(txnAmount)
		r.Rank, r.Sandbox = ledger.NewRank(timestamp, received, terminal == 1, stateRank, seq), sandbox == 1
		f.AddOperation(&r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read operation deliveries: %w", err)
	}
	return nil
}

// streamOrders reads the merchant order (the latest row of each order_no) of
// the chunk's parents, by the order_nos the fold found.
func (s *Store) streamOrders(ctx context.Context, _ chunk, f *ledger.Fold) error {
	orders := f.OrderNos()
	if len(orders) == 0 {
		return nil
	}
	slices.Sort(orders)
	ctx, in, err := s.inList(ctx, "order_no", orders)
	if err != nil {
		return err
	}
	rows, err := s.DB.conn.Query(ctx, `
SELECT order_no, argMax(amount, updated_at), argMax(currency_code, updated_at)
FROM merchant_orders
WHERE `+in+`
GROUP BY order_no`)
	if err != nil {
		return fmt.Errorf("query merchant orders: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			o   ledger.OrderRow
			amt decimal.Decimal
		)
		if err := rows.Scan(&o.OrderNo, &amt, &o.Currency); err != nil {
			return fmt.Errorf("scan merchant order: %w", err)
		}
		o.Amount = events.Amount{Decimal: amt, Valid: true}
		f.AddOrder(o)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read merchant orders: %w", err)
	}
	return nil
}

func (s *Store) streamUnreadable(ctx context.Context, c chunk, f *ledger.Fold) error {
	ctx, where, args, err := s.cond(ctx, c, unreadableKey)
	if err != nil {
		return err
	}
	rows, err := s.DB.conn.Query(ctx, `
SELECT `+unreadableKey+` AS key, delivery_id, any(kind), any(field), any(reason), toUInt32(min(received_at))
FROM unreadable_webhooks
WHERE `+where+`
GROUP BY key, delivery_id
ORDER BY key, delivery_id`, args...)
	if err != nil {
		return fmt.Errorf("query unreadable deliveries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			key string
			u   ledger.Unreadable
			at  uint32
		)
		if err := rows.Scan(&key, &u.DeliveryID, &u.Kind, &u.Field, &u.Reason, &at); err != nil {
			return fmt.Errorf("scan unreadable delivery: %w", err)
		}
		u.ReceivedAt = unixTime(at)
		f.AddUnreadable(key, u)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read unreadable deliveries: %w", err)
	}
	return nil
}

// streamOttu reads Ottu's own record of each parent, as the last answer of
// its Payment Status Query that was a verdict gave it (an answer that was
// none never reaches the rules).
func (s *Store) streamOttu(ctx context.Context, c chunk, f *ledger.Fold) error {
	ctx, where, args, err := s.cond(ctx, c, "session_id")
	if err != nil {
		return err
	}
	rows, err := s.DB.conn.Query(ctx, `
SELECT session_id, toUInt32(max(asked_at)), argMax(verdict, asked_at) = 'found', argMax(state, asked_at),
	argMax(amount, asked_at), argMax(currency_code, asked_at), argMax(is_sandbox, asked_at),
	argMax(child_session_ids, asked_at), argMax(child_states, asked_at), argMax(child_amounts, asked_at),
	argMax(child_currencies, asked_at)
FROM ottu_inquiries
WHERE verdict IN ('found', 'not_found') AND `+where+`
GROUP BY session_id`, args...)
	if err != nil {
		return fmt.Errorf("query Ottu's records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r              ledger.InquiryRow
			asked          uint32
			found, sandbox uint8
		)
		if err := rows.Scan(&r.SessionID, &asked, &found, &r.State, &r.Amount, &r.Currency, &sandbox,
			&r.ChildSessionIDs, &r.ChildStates, &r.ChildAmounts, &r.ChildCurrencies); err != nil {
			return fmt.Errorf("scan Ottu's record: %w", err)
		}
		r.AskedAt, r.Found, r.Sandbox = unixTime(asked), found == 1, sandbox == 1
		f.AddInquiry(r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read Ottu's records: %w", err)
	}
	return nil
}
