package clickhouse

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
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
	// defaultChunkSessions bounds a chunk of an incremental pass (a list of
	// session_ids sent in the query text, which ClickHouse caps at 256 KiB).
	defaultChunkSessions = 2000
	chunkSessionsBytes   = 96 << 10
)

// chunk is a set of parents read together: a range of session_ids [lo, hi)
// (an empty bound is open), or a list of them.
type chunk struct {
	lo, hi   string
	sessions []string
}

// set is the chunk's list of session_ids as a value for IN ?.
func (c chunk) set() clickhouse.GroupSet {
	set := make([]any, len(c.sessions))
	for i, s := range c.sessions {
		set[i] = s
	}
	return clickhouse.GroupSet{Value: set}
}

// cond returns the condition that keeps the chunk's parents, on column.
func (c chunk) cond(column string) (string, []any) {
	if c.sessions != nil {
		return column + " IN ?", []any{c.set()}
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
		return "1", nil
	}
	return strings.Join(conds, " AND "), args
}

// Parents streams the selected parents in session_id order, a chunk at a
// time.
func (s *Store) Parents(ctx context.Context, sel ledger.Selection, fn func(*ledger.Parent) error) error {
	shared, err := s.sharedRefs(ctx, sel)
	if err != nil {
		return err
	}
	var chunks []chunk
	if sel.All {
		chunks, err = s.ranges(ctx)
	} else {
		chunks, err = s.candidateChunks(ctx, sel)
	}
	if err != nil {
		return err
	}
	for _, c := range chunks {
		parents, err := s.readChunk(ctx, c)
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

// candidateChunks lists the parents sel selects, in order, in chunks.
func (s *Store) candidateChunks(ctx context.Context, sel ledger.Selection) ([]chunk, error) {
	union, args, err := candidates(sel)
	if err != nil {
		return nil, err
	}
	rows, err := s.DB.conn.Query(ctx, "SELECT key FROM ("+union+") AS candidates GROUP BY key ORDER BY key", args...)
	if err != nil {
		return nil, fmt.Errorf("query the parents to evaluate: %w", err)
	}
	defer rows.Close()
	var chunks []chunk
	cur, size, most := []string{}, 0, cmp.Or(s.chunkSessions, defaultChunkSessions)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("scan a parent to evaluate: %w", err)
		}
		if len(cur) == most || (len(cur) > 0 && size+len(id) > chunkSessionsBytes) {
			chunks, cur, size = append(chunks, chunk{sessions: cur}), []string{}, 0
		}
		cur, size = append(cur, id), size+len(id)+4
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the parents to evaluate: %w", err)
	}
	if len(cur) > 0 {
		chunks = append(chunks, chunk{sessions: cur})
	}
	return chunks, nil
}

// candidates returns a query of the parents (column key) an incremental
// selection keeps, and its args.
func candidates(sel ledger.Selection) (string, []any, error) {
	since := sel.StoredSince.UTC()
	conds := map[string][]string{"payment_events": {"stored_at >= ?"}, "operation_events": {"stored_at >= ?"}}
	args := map[string][]any{"payment_events": {since}, "operation_events": {since}}
	for _, w := range sel.Windows {
		a, ok := anchorSQL[w.Anchor]
		if !ok {
			return "", nil, fmt.Errorf("no query for anchor %s", w.Anchor)
		}
		conds[a.table] = append(conds[a.table], "("+a.cond+")")
		args[a.table] = append(args[a.table], w.From.UTC(), w.To.UTC())
	}
	// A SELECT per condition, not one with ORs: each reads only its own
	// columns, the cheapest first.
	var parts []string
	var all []any
	for _, table := range []string{"payment_events", "operation_events"} {
		a := args[table]
		for _, c := range conds[table] {
			parts = append(parts, "SELECT session_id AS key FROM "+table+" WHERE "+c)
			n := strings.Count(c, "?")
			all, a = append(all, a[:n]...), a[n:]
		}
	}
	parts = append(parts,
		"SELECT "+unreadableKey+" AS key FROM unreadable_webhooks WHERE stored_at >= ?",
		"SELECT session_id AS key FROM payment_events WHERE order_no IN (SELECT order_no FROM merchant_orders WHERE inserted_at >= ?)",
		"SELECT session_id AS key FROM findings WHERE status = 'open'",
		"SELECT session_id AS key FROM ottu_inquiries WHERE asked_at >= ?")
	all = append(all, since, since, since)
	if len(sel.Sessions) > 0 {
		parts = append(parts, "SELECT arrayJoin(?) AS key")
		all = append(all, sel.Sessions)
	}
	return strings.Join(parts, "\n\tUNION ALL "), all, nil
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

// sharedRefs returns, per parent, the signed references it shares with
// another parent: every such reference in a full pass; in an incremental
// one, those that may have changed since the last (ledger.ReplayedWebhook is
// the one rule that reads them).
func (s *Store) sharedRefs(ctx context.Context, sel ledger.Selection) (map[string][]ledger.Shared, error) {
	out := map[string][]ledger.Shared{}
	for _, t := range []struct{ kind, table string }{{"payment", "payment_events"}, {"operation", "operation_events"}} {
		filter, args := fmt.Sprintf(sharedByHash, t.table), []any(nil)
		if !sel.All {
			// A reference becomes shared only when a delivery of it is
			// stored; a parent that shared one before has an open
			// REPLAYED_WEBHOOK finding (it stays open while shared).
			filter = "reference_number IN (SELECT reference_number FROM " + t.table + ` WHERE stored_at >= ?
				OR session_id IN (SELECT session_id FROM findings WHERE status = 'open' AND code = ?)`
			args = []any{sel.StoredSince.UTC(), string(ledger.ReplayedWebhook)}
			if len(sel.Sessions) > 0 { // the parents the last pass could not read
				filter += " OR session_id IN ?"
				args = append(args, chunk{sessions: sel.Sessions}.set())
			}
			filter += ")"
		}
		rows, err := s.DB.conn.Query(ctx, fmt.Sprintf(sharedQuery, t.table, filter), args...)
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

// rank orders the deliveries of one parent or of one operation exactly as
// the views and the latest SQL expression do (see latest): a delivery whose
// timestamp_utc is not in the future of its arrival, then terminal, then the
// later timestamp_utc, the higher state rank, the later arrival, the later
// stream sequence.
type rank struct {
	fresh     bool
	terminal  uint8
	timestamp uint32
	stateRank uint8
	received  uint32
	seq       uint64
}

func newRank(timestamp, received uint32, terminal, stateRank uint8, seq uint64) rank {
	return rank{fresh: uint64(timestamp) <= uint64(received)+300, terminal: terminal, timestamp: timestamp,
		stateRank: stateRank, received: received, seq: seq}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// after reports whether r ranks strictly after o.
func (r rank) after(o rank) bool {
	return cmp.Or(
		cmp.Compare(b2i(r.fresh), b2i(o.fresh)),
		cmp.Compare(r.terminal, o.terminal),
		cmp.Compare(r.timestamp, o.timestamp),
		cmp.Compare(r.stateRank, o.stateRank),
		cmp.Compare(r.received, o.received),
		cmp.Compare(r.seq, o.seq),
	) > 0
}

// folding holds one chunk's parents while its deliveries are folded in.
// Payments fold into parents and latest, operations into ops, byParent and
// slab, at the same time.
type folding struct {
	parents  map[string]*ledger.Parent
	latest   map[string]rank        // of each parent's payment deliveries
	ops      map[opKey]*foldedOp    // of each operation
	byParent map[string][]*foldedOp // each parent's operations
	slab     []foldedOp             // where foldedOps are allocated, a block at a time
}

// newOp returns a new operation of session, from the slab: one allocation
// for many operations, and none moved once handed out.
func (f *folding) newOp(session string) *foldedOp {
	if len(f.slab) == cap(f.slab) {
		f.slab = make([]foldedOp, 0, 1024)
	}
	f.slab = f.slab[:len(f.slab)+1]
	o := &f.slab[len(f.slab)-1]
	f.byParent[session] = append(f.byParent[session], o)
	return o
}

type opKey struct{ session, reference string }

type foldedOp struct {
	session string
	op      ledger.Operation
	latest  rank
	set     bool // latest holds a delivery
}

func (f *folding) parent(id string) *ledger.Parent {
	p := f.parents[id]
	if p == nil {
		p = &ledger.Parent{SessionID: id}
		f.parents[id] = p
	}
	return p
}

// readChunk reads the parents of one chunk, in session_id order.
func (s *Store) readChunk(ctx context.Context, c chunk) ([]*ledger.Parent, error) {
	hint := len(c.sessions)
	if c.sessions == nil {
		hint = cmp.Or(s.ChunkRows, DefaultChunkRows) / 4
	}
	f := &folding{parents: make(map[string]*ledger.Parent, hint), latest: make(map[string]rank, hint),
		ops: make(map[opKey]*foldedOp, 2*hint), byParent: make(map[string][]*foldedOp, hint)}
	// Payments and operations fold into their own maps, each on a core of
	// its own; the rest attaches to the parents they made.
	opsDone := make(chan error, 1)
	go func() { opsDone <- s.foldOperations(ctx, c, f) }()
	err := s.foldPayments(ctx, c, f)
	if opsErr := <-opsDone; err == nil {
		err = opsErr
	}
	if err != nil {
		return nil, err
	}
	for _, step := range []func(context.Context, chunk, *folding) error{s.foldOrders, s.foldUnreadable, s.foldOttu} {
		if err := step(ctx, c, f); err != nil {
			return nil, err
		}
	}
	for session, ops := range f.byParent {
		p := f.parent(session)
		slices.SortFunc(ops, func(a, b *foldedOp) int { return cmp.Compare(a.op.ReferenceNumber, b.op.ReferenceNumber) })
		p.Operations = make([]ledger.Operation, len(ops))
		for i, o := range ops {
			p.Operations[i] = o.op
			p.Sandbox = p.Sandbox || o.op.Sandbox
		}
	}
	out := make([]*ledger.Parent, 0, len(f.parents))
	for _, p := range f.parents {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *ledger.Parent) int { return cmp.Compare(a.SessionID, b.SessionID) })
	return out, nil
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

// before reports whether t is set and earlier than u (or u is not set).
func before(t, u time.Time) bool { return !t.IsZero() && (u.IsZero() || t.Before(u)) }

func (s *Store) foldPayments(ctx context.Context, c chunk, f *folding) error {
	where, args := c.cond("session_id")
	rows, err := s.DB.conn.Query(ctx, `
SELECT session_id, order_no, state, amount, currency_code, refunded_amount, voided_amount, toUInt32(timestamp_utc),
	toUInt32(received_at), is_terminal, state_rank, stream_seq, child_session_ids, is_sandbox
FROM payment_events
PREWHERE `+where, args...)
	if err != nil {
		return fmt.Errorf("query payment deliveries: %w", err)
	}
	defer rows.Close()
	var (
		session, orderNo, state, currency string
		amt, refunded, voided             *decimal.Decimal
		timestamp, received               uint32
		terminal, stateRank, sandbox      uint8
		seq                               uint64
		children                          []string
		p                                 *ledger.Parent
	)
	for rows.Next() {
		if err := rows.Scan(&session, &orderNo, &state, &amt, &currency, &refunded, &voided, &timestamp, &received,
			&terminal, &stateRank, &seq, &children, &sandbox); err != nil {
			return fmt.Errorf("scan payment delivery: %w", err)
		}
		if p == nil || session != p.SessionID { // rows of a parent mostly come together
			p = f.parent(session)
		}
		r := newRank(timestamp, received, terminal, stateRank, seq)
		if best, ok := f.latest[session]; !ok || r.after(best) {
			f.latest[session] = r
			p.OrderNo, p.State, p.Amount, p.Currency = orderNo, state, amount(amt), currency
			p.RefundedAmount, p.VoidedAmount = amount(refunded), amount(voided)
		}
		p.HasPayment = true
		if p.Reached == nil {
			p.Reached = map[string]bool{}
		}
		p.Reached[state] = true
		at := unixTime(received)
		if state == events.StateAuthorized && before(unixTime(timestamp), p.AuthorizedAt) {
			p.AuthorizedAt = unixTime(timestamp)
		}
		if at.After(p.LastPaymentAt) {
			p.LastPaymentAt = at
		}
		for _, child := range children {
			if p.Listed == nil {
				p.Listed = map[string]time.Time{}
			}
			if first, ok := p.Listed[child]; !ok || at.Before(first) {
				p.Listed[child] = at
			}
		}
		p.Sandbox = p.Sandbox || sandbox == 1
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read payment deliveries: %w", err)
	}
	return nil
}

func (s *Store) foldOperations(ctx context.Context, c chunk, f *folding) error {
	where, args := c.cond("session_id")
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
		v                            ledger.Variant
		session, reference           string
		amt, txnAmount               *decimal.Decimal
		timestamp, received          uint32
		terminal, stateRank, sandbox uint8
		seq                          uint64
		o                            *foldedOp
	)
	for rows.Next() {
		if err := rows.Scan(&session, &reference, &v.Child, &v.Operation, &v.Source, &v.TxnState, &v.Currency, &amt,
			&txnAmount, &timestamp, &received, &terminal, &stateRank, &seq, &sandbox); err != nil {
			return fmt.Errorf("scan operation delivery: %w", err)
		}
		v.Amount, v.TxnAmount = amount(amt), amount(txnAmount)
		r := newRank(timestamp, received, terminal, stateRank, seq)
		if o == nil || reference != o.op.ReferenceNumber || session != o.session { // mostly together too
			k := opKey{session, reference}
			if o = f.ops[k]; o == nil {
				o = f.newOp(session)
				o.session, o.op.ReferenceNumber = session, reference
				f.ops[k] = o
			}
		}
		if !o.set || r.after(o.latest) {
			o.latest, o.set = r, true
			o.op.ChildSessionID, o.op.Operation, o.op.Source, o.op.TxnState = v.Child, v.Operation, v.Source, v.TxnState
			o.op.TxnCurrency, o.op.Amount, o.op.TxnAmount = v.Currency, v.Amount, v.TxnAmount
		}
		if at := unixTime(received); before(at, o.op.FirstReceived) {
			o.op.FirstReceived = at
		}
		if v.TxnState == "refund_queued" || v.TxnState == "refund-queued" {
			if at := unixTime(timestamp); before(at, o.op.QueuedSince) {
				o.op.QueuedSince = at
			}
		}
		o.op.Sandbox = o.op.Sandbox || sandbox == 1
		o.op.Seen.Add(v)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read operation deliveries: %w", err)
	}
	return nil
}

// foldOrders attaches each parent's merchant order (the latest row of its
// order_no).
func (s *Store) foldOrders(ctx context.Context, c chunk, f *folding) error {
	byOrder := map[string][]*ledger.Parent{}
	for _, p := range f.parents {
		if p.HasPayment && p.OrderNo != "" {
			byOrder[p.OrderNo] = append(byOrder[p.OrderNo], p)
		}
	}
	if len(byOrder) == 0 {
		return nil
	}
	where, args := c.cond("session_id")
	rows, err := s.DB.conn.Query(ctx, `
SELECT order_no, argMax(amount, updated_at), argMax(currency_code, updated_at)
FROM merchant_orders
WHERE order_no IN (SELECT order_no FROM payment_events WHERE `+where+`)
GROUP BY order_no`, args...)
	if err != nil {
		return fmt.Errorf("query merchant orders: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			orderNo, currency string
			amt               decimal.Decimal
		)
		if err := rows.Scan(&orderNo, &amt, &currency); err != nil {
			return fmt.Errorf("scan merchant order: %w", err)
		}
		for _, p := range byOrder[orderNo] {
			p.Order = &ledger.Order{Amount: events.Amount{Decimal: amt, Valid: true}, Currency: currency}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read merchant orders: %w", err)
	}
	return nil
}

func (s *Store) foldUnreadable(ctx context.Context, c chunk, f *folding) error {
	where, args := c.cond(unreadableKey)
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
		p := f.parent(key)
		p.Unreadable = append(p.Unreadable, u)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read unreadable deliveries: %w", err)
	}
	return nil
}

// foldOttu reads Ottu's own record of each parent, as the last answer of
// its Payment Status Query that was a verdict gave it (an answer that was
// none never reaches the rules).
func (s *Store) foldOttu(ctx context.Context, c chunk, f *folding) error {
	where, args := c.cond("session_id")
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
			session                             string
			asked                               uint32
			found, sandbox                      uint8
			amount                              string
			rec                                 ledger.OttuRecord
			children, states, texts, currencies []string
		)
		if err := rows.Scan(&session, &asked, &found, &rec.State, &amount, &rec.Currency, &sandbox,
			&children, &states, &texts, &currencies); err != nil {
			return fmt.Errorf("scan Ottu's record: %w", err)
		}
		rec.AskedAt, rec.Found, rec.Sandbox = unixTime(asked), found == 1, sandbox == 1
		p := f.parent(session)
		fail := func(what string, err error) {
			if p.Err == nil {
				p.Err = fmt.Errorf("Ottu's record of %s: %s: %w", session, what, err)
			}
		}
		if amount != "" {
			a, err := events.ParseAmount(amount)
			if err != nil {
				fail("amount", err)
			}
			rec.Amount = a
		}
		rec.Children = make(map[string]ledger.OttuChild, len(children))
		for i, child := range children {
			c := ledger.OttuChild{}
			if i < len(states) {
				c.State = states[i]
			}
			if i < len(currencies) {
				c.Currency = currencies[i]
			}
			if i < len(texts) {
				a, err := events.ParseAmount(texts[i])
				if err != nil {
					fail("child "+child, err)
				}
				c.Amount = a
			}
			rec.Children[child] = c
		}
		p.Ottu = &rec
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read Ottu's records: %w", err)
	}
	return nil
}
