package ledger

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// ClockSkew is how far a delivery's timestamp_utc may be ahead of its
// arrival and still count as Ottu's clock: a later one (a re-posted body with
// a forged future time) ranks below every other delivery and never becomes
// the latest state (docs/ottu-webhooks.md §4.1, §8.14).
const ClockSkew = 5 * time.Minute

// Rank orders the deliveries of one payment or one operation; the latest is
// the highest: first a timestamp_utc within ClockSkew of its arrival, then a
// terminal state, then the later timestamp_utc, the higher state rank
// (events.PaymentStateOrder, events.TxnStateOrder), the later arrival, the
// later stream sequence. The views and the store's queries compute the same
// order in SQL; clickhouse's TestLatest holds the two together.
type Rank struct {
	Plausible bool // timestamp_utc is not more than ClockSkew after arrival
	Terminal  bool
	Timestamp uint32 // timestamp_utc, Unix seconds
	StateRank uint8
	Received  uint32 // arrival, Unix seconds
	Seq       uint64 // stream sequence
}

// NewRank is the rank of a delivery (times in Unix seconds, as the store
// keeps them).
func NewRank(timestamp, received uint32, terminal bool, stateRank uint8, seq uint64) Rank {
	return Rank{Plausible: uint64(timestamp) <= uint64(received)+uint64(ClockSkew/time.Second), Terminal: terminal,
		Timestamp: timestamp, StateRank: stateRank, Received: received, Seq: seq}
}

// Compare orders r and o: negative when r ranks before o.
func (r Rank) Compare(o Rank) int {
	return cmp.Or(
		cmp.Compare(b2i(r.Plausible), b2i(o.Plausible)),
		cmp.Compare(b2i(r.Terminal), b2i(o.Terminal)),
		cmp.Compare(r.Timestamp, o.Timestamp),
		cmp.Compare(r.StateRank, o.StateRank),
		cmp.Compare(r.Received, o.Received),
		cmp.Compare(r.Seq, o.Seq),
	)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// PaymentRow is one payment delivery as the store keeps it.
type PaymentRow struct {
	SessionID      string
	OrderNo        string
	State          string
	Amount         events.Amount
	Currency       string
	RefundedAmount events.Amount
	VoidedAmount   events.Amount
	Rank           Rank
	Children       []string // transactions[]'s session_ids
	Sandbox        bool
	Gateway        string // gateway_name, else gateway_account
	// Recorded: the delivery is Ottu's signed record, which ottu-recon
	// asked for (source inquiry), not a webhook.
	Recorded bool
}

// OperationRow is one operation delivery as the store keeps it.
type OperationRow struct {
	SessionID       string // the parent
	ReferenceNumber string
	Variant
	Rank    Rank
	Sandbox bool
}

// OrderRow is the merchant's order for an order_no (its latest row).
type OrderRow struct {
	OrderNo  string
	Amount   events.Amount
	Currency string
}

// InquiryRow is the last answer of Ottu's Payment Status Query about a
// parent that was a verdict, with its texts as Ottu sent them.
type InquiryRow struct {
	SessionID       string
	AskedAt         time.Time
	Found           bool
	State           string
	Amount          string
	Currency        string
	Sandbox         bool
	ChildSessionIDs []string
	ChildStates     []string
	ChildAmounts    []string
	ChildCurrencies []string
}

// Fold builds parents from the rows the store streams, for one chunk of
// parents: what a parent is (its latest state, the states it reached, when
// it was authorized, the children it listed, its operations each at their
// latest, what Ottu's record said) is decided here, not in the store.
//
// AddPayment and AddOperation touch separate state: each may run on its own
// goroutine, at the same time as the other. Everything else runs after both,
// one call at a time.
type Fold struct {
	parents  map[string]*Parent
	latest   map[string]Rank        // of each parent's payment deliveries
	ops      map[opKey]*foldedOp    // of each operation
	byParent map[string][]*foldedOp // each parent's operations
	slab     []foldedOp             // where foldedOps are allocated, a block at a time
	lastPay  *Parent                // rows of a parent mostly come together
	lastOp   *foldedOp
	byOrder  map[string][]*Parent // parents by order_no, once payments are folded
}

type opKey struct{ session, reference string }

type foldedOp struct {
	session string
	op      Operation
	latest  Rank
	set     bool   // latest holds a delivery
	seq     uint64 // the highest stream sequence of its deliveries
}

// NewFold returns a fold sized for about hint parents.
func NewFold(hint int) *Fold {
	return &Fold{parents: make(map[string]*Parent, hint), latest: make(map[string]Rank, hint),
		ops: make(map[opKey]*foldedOp, 2*hint), byParent: make(map[string][]*foldedOp, hint)}
}

func (f *Fold) parent(id string) *Parent {
	p := f.parents[id]
	if p == nil {
		p = &Parent{SessionID: id}
		f.parents[id] = p
	}
	return p
}

// newOp returns a new operation of session, from the slab: one allocation
// for many operations, and none moved once handed out.
func (f *Fold) newOp(session string) *foldedOp {
	if len(f.slab) == cap(f.slab) {
		f.slab = make([]foldedOp, 0, 1024)
	}
	f.slab = f.slab[:len(f.slab)+1]
	o := &f.slab[len(f.slab)-1]
	f.byParent[session] = append(f.byParent[session], o)
	return o
}

// AddPayment folds one payment delivery into its parent.
func (f *Fold) AddPayment(r *PaymentRow) {
	p := f.lastPay
	if p == nil || p.SessionID != r.SessionID {
		p = f.parent(r.SessionID)
		f.lastPay = p
	}
	if best, ok := f.latest[r.SessionID]; !ok || r.Rank.Compare(best) > 0 {
		f.latest[r.SessionID] = r.Rank
		p.OrderNo, p.State, p.Amount, p.Currency = r.OrderNo, r.State, r.Amount, r.Currency
		p.RefundedAmount, p.VoidedAmount, p.Gateway = r.RefundedAmount, r.VoidedAmount, r.Gateway
	}
	p.HasPayment = true
	p.LastSeq = max(p.LastSeq, r.Rank.Seq)
	if p.Reached == nil {
		p.Reached = map[string]bool{}
	}
	p.Reached[r.State] = true
	at := unixTime(r.Rank.Received)
	if r.Recorded {
		if _, ok := p.Recorded[r.State]; !ok {
			if p.Recorded == nil {
				p.Recorded = map[string]Recorded{}
			}
			p.Recorded[r.State] = Recorded{Amount: r.Amount, Currency: r.Currency, Since: unixTime(r.Rank.Timestamp), AskedAt: at}
		}
	} else {
		if p.ByWebhook == nil {
			p.ByWebhook = map[string]bool{}
		}
		p.ByWebhook[r.State] = true
	}
	if r.State == events.StateAuthorized && before(unixTime(r.Rank.Timestamp), p.AuthorizedAt) {
		p.AuthorizedAt = unixTime(r.Rank.Timestamp)
	}
	if at.After(p.LastPaymentAt) {
		p.LastPaymentAt = at
	}
	for _, child := range r.Children {
		if p.Listed == nil {
			p.Listed = map[string]time.Time{}
		}
		if first, ok := p.Listed[child]; !ok || at.Before(first) {
			p.Listed[child] = at
		}
	}
	p.Sandbox = p.Sandbox || r.Sandbox
}

// AddOperation folds one operation delivery into its operation.
func (f *Fold) AddOperation(r *OperationRow) {
	o := f.lastOp
	if o == nil || o.op.ReferenceNumber != r.ReferenceNumber || o.session != r.SessionID {
		k := opKey{r.SessionID, r.ReferenceNumber}
		if o = f.ops[k]; o == nil {
			o = f.newOp(r.SessionID)
			o.session, o.op.ReferenceNumber = r.SessionID, r.ReferenceNumber
			f.ops[k] = o
		}
		f.lastOp = o
	}
	v := &r.Variant
	if !o.set || r.Rank.Compare(o.latest) > 0 {
		o.latest, o.set = r.Rank, true
		o.op.ChildSessionID, o.op.Operation, o.op.Source, o.op.TxnState = v.Child, v.Operation, v.Source, v.TxnState
		o.op.TxnCurrency, o.op.Amount, o.op.TxnAmount = v.Currency, v.Amount, v.TxnAmount
	}
	if at := unixTime(r.Rank.Received); before(at, o.op.FirstReceived) {
		o.op.FirstReceived = at
	}
	if events.IsRefundQueued(v.TxnState) {
		if at := unixTime(r.Rank.Timestamp); before(at, o.op.QueuedSince) {
			o.op.QueuedSince = at
		}
	}
	o.op.Sandbox = o.op.Sandbox || r.Sandbox
	o.op.Seen.Add(*v)
	o.seq = max(o.seq, r.Rank.Seq)
}

// OrderNos lists the order_nos of the parents folded so far, whose
// merchant orders the rules compare (AddOrder), in no particular order.
func (f *Fold) OrderNos() []string {
	out := make([]string, 0, len(f.orders()))
	for o := range f.orders() {
		out = append(out, o)
	}
	return out
}

func (f *Fold) orders() map[string][]*Parent {
	if f.byOrder == nil {
		f.byOrder = map[string][]*Parent{}
		for _, p := range f.parents {
			if p.HasPayment && p.OrderNo != "" {
				f.byOrder[p.OrderNo] = append(f.byOrder[p.OrderNo], p)
			}
		}
	}
	return f.byOrder
}

// AddOrder attaches a merchant order to every parent with its order_no.
// Call it once every payment is folded.
func (f *Fold) AddOrder(o OrderRow) {
	for _, p := range f.orders()[o.OrderNo] {
		p.Order = &Order{Amount: o.Amount, Currency: o.Currency}
	}
}

// AddUnreadable files an authentic delivery that could not be read under key:
// its parent's session_id when that could be read, else its own delivery id
// (the store decides it where it selects the deliveries).
func (f *Fold) AddUnreadable(key string, u Unreadable) {
	p := f.parent(key)
	p.Unreadable = append(p.Unreadable, u)
}

// AddInquiry attaches Ottu's record of a parent. A text that cannot be read
// as an amount makes the parent unreadable this time (Parent.Err).
func (f *Fold) AddInquiry(r InquiryRow) {
	p := f.parent(r.SessionID)
	rec := &OttuRecord{AskedAt: r.AskedAt, Found: r.Found, State: r.State, Currency: r.Currency, Sandbox: r.Sandbox,
		Children: make(map[string]OttuChild, len(r.ChildSessionIDs))}
	fail := func(what string, err error) {
		if p.Err == nil {
			p.Err = fmt.Errorf("record from Ottu of %s: %s: %w", r.SessionID, what, err)
		}
	}
	if r.Amount != "" {
		a, err := events.ParseAmount(r.Amount)
		if err != nil {
			fail("amount", err)
		}
		rec.Amount = a
	}
	for i, child := range r.ChildSessionIDs {
		c := OttuChild{State: at(r.ChildStates, i), Currency: at(r.ChildCurrencies, i)}
		if i < len(r.ChildAmounts) {
			a, err := events.ParseAmount(r.ChildAmounts[i])
			if err != nil {
				fail("child "+child, err)
			}
			c.Amount = a
		}
		rec.Children[child] = c
	}
	p.Ottu = rec
}

func at(xs []string, i int) string {
	if i < len(xs) {
		return xs[i]
	}
	return ""
}

// Parents returns the folded parents, each with its operations (by
// reference_number), in session_id order.
func (f *Fold) Parents() []*Parent {
	for session, ops := range f.byParent {
		p := f.parent(session)
		slices.SortFunc(ops, func(a, b *foldedOp) int { return cmp.Compare(a.op.ReferenceNumber, b.op.ReferenceNumber) })
		p.Operations = make([]Operation, len(ops))
		for i, o := range ops {
			p.Operations[i] = o.op
			p.Sandbox = p.Sandbox || o.op.Sandbox
			p.LastSeq = max(p.LastSeq, o.seq)
		}
	}
	out := make([]*Parent, 0, len(f.parents))
	for _, p := range f.parents {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Parent) int { return cmp.Compare(a.SessionID, b.SessionID) })
	return out
}

func unixTime(sec uint32) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(int64(sec), 0).UTC()
}

// before reports whether t is set and earlier than u (or u is not set).
func before(t, u time.Time) bool { return !t.IsZero() && (u.IsZero() || t.Before(u)) }
